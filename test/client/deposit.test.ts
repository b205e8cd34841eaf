import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import {
  channelKey,
  createPayingFetch,
  fileStateStore,
  getChannelStatus,
  InsufficientDepositError,
  memoryStateStore,
  openChannel,
  requestWithdrawal,
  termsFromOffer,
  topUp,
  type ChannelTerms,
  type ClientState,
} from "../../src/client";
import {
  decodeHeader,
  decodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type PaymentRequired,
} from "../../src/protocol/headers";
import { MAX_AMOUNT } from "../../src/protocol/voucher";
import type { PaymentServer } from "../../src/server/app";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { runPaychan as cli } from "../helpers/cli";
import { startLocalServer, type LocalServer } from "../helpers/localServer";

/**
 * The paying client never signs above what the channel can cover, and a refused voucher does not
 * poison later payments; `paychan pay` explains a refusal with the command that fixes it; `paychan
 * withdraw --cancel` ends a pending withdrawal. A real `hardhat node`, the real server and relay.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
/** Hardhat account #5: holds ETH, so it can send its own withdrawal transactions. */
const BUYER_KEY: Hex = HARDHAT_KEYS[5];
const DOLLAR = 1_000_000n;
const PRICE = 1_000n;
const HUGE = 2n * DOLLAR;

/** A fetch that records every voucher sent (amount and signature). */
function recordingFetch() {
  const vouchers: { amount: bigint; signature: Hex }[] = [];
  const fetchImpl: typeof fetch = async (input, init) => {
    const header = new Headers(init?.headers).get(PAYMENT_SIGNATURE_HEADER);
    if (header) {
      const decoded = decodePaymentSignature(header);
      if (decoded.ok) vouchers.push({ amount: decoded.voucher.amount, signature: decoded.voucher.signature });
    }
    return fetch(input, init);
  };
  return { vouchers, fetchImpl };
}

/** The unsigned probe: amount 2^96 − 1 and r = s = 1. */
const isProbe = (v: { amount: bigint; signature: Hex }) =>
  v.amount === MAX_AMOUNT &&
  BigInt(v.signature.slice(0, 66)) === 1n &&
  BigInt(`0x${v.signature.slice(66, 130)}`) === 1n;

function refusalOf(response: Response): PaymentRequired {
  return decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER)!);
}

describe("client: deposit bounds, recovery from refused vouchers, pay refusals and withdraw --cancel", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let localServer: LocalServer;
  let server: PaymentServer;
  let dir: string;
  let baseUrl: string;
  let usdc: Address;
  let contract: Address;
  let terms: ChannelTerms;
  const funder = privateKeyToAccount(generatePrivateKey());
  const buyer = privateKeyToAccount(BUYER_KEY);

  const mint = async (to: Address, amount: bigint) => {
    const wallet = createWalletClient({
      account: privateKeyToAccount(MINTER_KEY),
      chain: hardhat,
      transport: httpTransport(node.url),
    });
    const hash = await wallet.writeContract({ address: usdc, abi: usdcAbi, functionName: "mint", args: [to, amount] });
    await publicClient.waitForTransactionReceipt({ hash });
  };
  /** Opens a $1 channel gaslessly for `funder`, signed by a fresh session key. */
  const openDollar = async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const opened = await openChannel({
      terms,
      funding: { kind: "relay", payer: funder },
      signer: session.address,
      amount: DOLLAR,
      withdrawDelay: 3600,
    });
    return { session, opened };
  };
  /** Waits until the server's engine sees `check` hold for the channel. */
  const serverSees = async (channelId: bigint, check: (r: { deposit: bigint; withdrawReadyAt: number }) => boolean) => {
    for (let waited = 0; waited < 20_000; waited += 100) {
      const record = server.engine.record(channelId);
      if (record && check(record)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error("the server did not see the channel change");
  };

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    localServer = await startLocalServer(
      { rpcUrl: node.url, contract, token: usdc },
      { payee: PAYEE_KEY, relayer: RELAYER_KEY },
      {
        routes: { "GET /paid": "$0.001", "GET /huge": "$2" },
        // Larger than the withdraw delay: a requested withdrawal is at once inside the margin.
        withdrawSafetyMarginSec: 7200,
        pollIntervalMs: 100,
      },
      "/paid",
    );
    ({ server, baseUrl, dir } = localServer);
    terms = termsFromOffer(localServer.offer, `${baseUrl}/paid`);
    await mint(funder.address, 20n * DOLLAR);
    await mint(buyer.address, 5n * DOLLAR);
  });

  after(async () => {
    await localServer?.stop();
    await node?.stop();
  });

  it("never signs above the known deposit: a price above what remains is refused before signing, naming the fix", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const { vouchers, fetchImpl } = recordingFetch();
    // The resolver answers openChannel's result: the deposit is known before the first voucher.
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      maxPerRequest: 5n * DOLLAR,
      maxTotal: 10n * DOLLAR,
      channel: (offer, url) =>
        openChannel({
          terms: termsFromOffer(offer, url),
          funding: { kind: "relay", payer: funder },
          signer: session.address,
          amount: DOLLAR,
        }),
    });
    let refused: unknown;
    await pay(`${baseUrl}/huge`).catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(InsufficientDepositError);
    const error = refused as InsufficientDepositError;
    expect({ price: error.price, deposit: error.deposit, available: error.available }).to.deep.equal({
      price: HUGE,
      deposit: DOLLAR,
      available: DOLLAR,
    });
    expect(error.message).to.include("top the channel up, or open a new one");
    expect(termsFromOffer(error.offer, error.url).contract).to.equal(terms.contract);
    // Only the unsigned probe went out above the deposit; nothing was signed.
    expect(vouchers.filter((v) => v.amount > DOLLAR).every(isProbe)).to.equal(true);
    expect(vouchers.filter((v) => !isProbe(v))).to.deep.equal([]);
    expect(pay.reserved).to.equal(0n);

    const cheap = await pay(`${baseUrl}/paid`);
    expect(cheap.status).to.equal(200);
    expect(cheap.payment?.amount).to.equal(PRICE);
    expect(pay.channelState(error.channelId)).to.deep.include({ signedMax: "1000", deposit: "1000000" });
  });

  it("recovers from a voucher refused with amount_exceeds_deposit: later cheap requests pay (deposit unknown when signing)", async () => {
    const { session, opened } = await openDollar();
    const channelId = opened.channelId;
    // A fixed channel id on an empty state: nothing tells the client the deposit before the first answer.
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: 5n * DOLLAR,
      maxTotal: 10n * DOLLAR,
      store: memoryStateStore(),
    });
    const over = await pay(`${baseUrl}/huge`);
    expect(over.status).to.equal(402);
    expect(refusalOf(over).error).to.equal("amount_exceeds_deposit");
    // The refused amount is not used: the state comes back to the server's view.
    expect(pay.channelState(channelId)).to.deep.include({ signedMax: "0", chargedKnown: "0", deposit: "1000000" });
    for (let i = 1n; i <= 3n; i++) {
      const cheap = await pay(`${baseUrl}/paid?i=${i}`);
      expect(cheap.status).to.equal(200);
      expect(cheap.payment?.amount).to.equal(i * PRICE);
    }
    // Now the request above the deposit is refused before signing.
    await pay(`${baseUrl}/huge`).then(
      () => expect.fail("paid above the deposit"),
      (error: unknown) => expect(error).to.be.instanceOf(InsufficientDepositError),
    );

    // A state file left by a client that signed above the deposit (signedMax 5,000,000, no deposit
    // recorded): the first request is refused, the view corrects the state, and it is retried once.
    const file = path.join(dir, "stale-state.json");
    const stale = fileStateStore(file, { fsync: false });
    stale.load().channels[channelKey(`eip155:${terms.chainId}`, terms.contract, channelId)] = {
      channelId: `0x${channelId.toString(16)}`,
      signedMax: (5n * DOLLAR).toString(),
      chargedKnown: "0",
      receipts: 0,
    };
    stale.save();
    const resumed = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: 5n * DOLLAR,
      maxTotal: 10n * DOLLAR,
      store: fileStateStore(file, { fsync: false }),
    });
    const again = await resumed(`${baseUrl}/paid?stale=1`);
    expect(again.status).to.equal(200);
    expect(again.payment?.resynced).to.equal(true);
    expect(again.payment?.amount).to.equal(4n * PRICE);
    expect(JSON.parse(readFileSync(file, "utf8")) as ClientState).to.have.nested.property("version", 1);
    expect(server.store.getLedger(channelId)?.chargedTotal).to.equal(4n * PRICE);
  });

  it("asks the server before refusing: a top-up made elsewhere is learned through the unsigned probe", async () => {
    const { session, opened } = await openDollar();
    const channelId = opened.channelId;
    const { vouchers, fetchImpl } = recordingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: 5n * DOLLAR,
      maxTotal: 10n * DOLLAR,
    });
    expect((await pay(`${baseUrl}/paid`)).payment?.amount).to.equal(PRICE);
    expect(pay.channelState(channelId)?.deposit).to.equal("1000000");
    // Topped up by another program: this client still believes the deposit is $1.
    await topUp({ terms, funding: { kind: "relay", payer: funder }, channelId, amount: 2n * DOLLAR });
    await serverSees(channelId, (r) => r.deposit === 3n * DOLLAR);
    const huge = await pay(`${baseUrl}/huge`);
    expect(huge.status).to.equal(200);
    expect(huge.payment?.amount).to.equal(PRICE + HUGE);
    expect(vouchers.filter(isProbe)).to.have.length(1);
    expect(pay.channelState(channelId)?.deposit).to.equal("3000000");
    expect((await getChannelStatus({ publicClient, contract, channelId }))?.deposit).to.equal(3n * DOLLAR);
  });

  it("paychan pay: a refusal prints its code, meaning and fix (exit 4); withdraw --cancel lets the channel pay again", async () => {
    const state = path.join(dir, "cli-state");
    const opened = await cli(["open", `${baseUrl}/paid`, "--deposit", "$1", "--state", state], {
      PAYCHAN_PAYER_PRIVATE_KEY: BUYER_KEY,
    });
    expect(opened.code, opened.stderr).to.equal(0);
    const { channelId: id } = JSON.parse(opened.stdout) as { channelId: string };
    const channelId = BigInt(id);

    // Above the deposit: refused before signing, with the top-up and open commands.
    const huge = await cli([
      "pay",
      `${baseUrl}/huge`,
      "--state",
      state,
      "--max-per-request",
      "$5",
      "--max-total",
      "$5",
    ]);
    expect(huge.code).to.equal(4);
    expect(huge.stdout).to.equal("");
    expect(huge.stderr).to.include(
      `asks 2000000 atomic units, but channel ${id} has 1000000 of its 1000000 deposit left`,
    );
    expect(huge.stderr).to.include(
      `  fix: top it up: paychan topup --channel ${id} --amount '$1' --url ${baseUrl}/huge --network localhost --state ${state}`,
    );
    expect(huge.stderr).to.include(
      `or open a new channel: paychan open ${baseUrl}/huge --deposit '$2' --state ${state}`,
    );
    expect(huge.stderr).not.to.match(/\n\s+at /);
    const paid = await cli(["pay", `${baseUrl}/paid`, "--state", state]);
    expect(paid.code, paid.stderr).to.equal(0);
    expect(paid.stderr).to.match(/paid 1000 \(voucher 1000 on channel/);

    // Refused by the server: a withdrawal ends inside the server's safety margin.
    const wallet = createWalletClient({ account: buyer, chain: hardhat, transport: httpTransport(node.url) });
    await requestWithdrawal({ publicClient, wallet, contract, channelId });
    await serverSees(channelId, (r) => r.withdrawReadyAt !== 0);
    const withdrawing = await cli(["pay", `${baseUrl}/paid`, "--state", state]);
    expect(withdrawing.code).to.equal(4);
    // stdout keeps the server's machine-readable answer.
    expect((JSON.parse(withdrawing.stdout) as PaymentRequired).error).to.equal("channel_withdrawing");
    expect(withdrawing.stderr).to.include(
      "paychan pay: payment refused (HTTP 402 channel_withdrawing): a withdrawal of channel",
    );
    expect(withdrawing.stderr).to.include(
      `  fix: cancel it: paychan withdraw --cancel --channel ${id} --network localhost --state ${state}`,
    );

    const cancelled = await cli(
      ["withdraw", "--cancel", "--channel", id, "--network", "localhost", "--rpc", node.url, "--state", state],
      { PAYCHAN_PAYER_PRIVATE_KEY: BUYER_KEY },
    );
    expect(cancelled.code, cancelled.stderr).to.equal(0);
    expect(JSON.parse(cancelled.stdout)).to.deep.include({ channelId: id, status: "open", withdrawReadyAt: 0 });
    expect((await getChannelStatus({ publicClient, contract, channelId }))?.withdrawReadyAt).to.equal(0);
    const nothing = await cli(
      ["withdraw", "--cancel", "--channel", id, "--network", "localhost", "--rpc", node.url, "--state", state],
      { PAYCHAN_PAYER_PRIVATE_KEY: BUYER_KEY },
    );
    expect(nothing.code).to.equal(1);
    expect(nothing.stderr).to.include("no withdrawal is pending on this channel: nothing to cancel");
    await serverSees(channelId, (r) => r.withdrawReadyAt === 0);
    const again = await cli(["pay", `${baseUrl}/paid`, "--state", state]);
    expect(again.code, again.stderr).to.equal(0);
  });
});
