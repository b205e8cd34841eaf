import { expect } from "chai";
import axios from "axios";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { wrapAxiosWithPayment } from "@x402/axios";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { wrapFetchWithPayment, x402Client, x402HTTPClient } from "@x402/fetch";
import type { PaymentResponseContext } from "@x402/core/client";
import { createPublicClient, createWalletClient, http as httpTransport, type Address, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { fileStateStore, PaymentLimitError, type ClientState } from "../../src/client";
import { createChannelScheme, findDefaultAssetIn, type ChannelSchemeOptions } from "../../src/client/x402";
import { PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER } from "../../src/protocol/headers";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { startLocalServer, type LocalServer } from "../helpers/localServer";
import { validPaymentPayload, validPaymentRequired, validSettleResponse } from "../helpers/x402Wire";

/**
 * paychan/x402 with x402's own clients: the unmodified @x402/fetch and @x402/axios wrappers, with
 * the `channel` scheme registered on an x402Client, pay a real paychan server (SQLite, gasless
 * relay) on a `hardhat node`.
 */

const PRICE = 1_000n;
const DEPOSIT = 5_000_000n;
const NETWORK = "eip155:31337";

describe("paychan/x402: x402's fetch and axios clients pay through a channel (hardhat node, real server)", function () {
  this.timeout(180_000);

  let node: HardhatNode;
  let local: LocalServer;
  let publicClient: PublicClient;
  let usdc: Address;
  let dir: string;
  let stateFile: string;
  const funder = privateKeyToAccount(generatePrivateKey());
  const session = privateKeyToAccount(generatePrivateKey());

  /** Counts and checks every PAYMENT-SIGNATURE sent with @x402's own validator. */
  const sent = { vouchers: 0, invalid: [] as string[] };
  const countingFetch: typeof fetch = async (input, init) => {
    const request = new Request(input, init);
    const header = request.headers.get(PAYMENT_SIGNATURE_HEADER);
    if (header) {
      sent.vouchers++;
      try {
        validPaymentPayload(header);
      } catch (error) {
        sent.invalid.push(String(error));
      }
    }
    return fetch(request);
  };

  const schemeOptions = (): ChannelSchemeOptions => ({
    sessionAccount: session,
    funding: { kind: "relay", payer: funder },
    deposit: DEPOSIT,
    store: fileStateStore(stateFile),
    defaultAssets: [{ network: NETWORK, asset: usdc, decimals: 6, symbol: "USDC" }],
  });
  const ledger = () => {
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as ClientState;
    return local.server.store.getLedger(BigInt(Object.values(state.offers)[0]));
  };

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    local = await startLocalServer(
      { rpcUrl: node.url, contract: node.deployments!.PaymentChannels, token: usdc },
      { payee: HARDHAT_KEYS[2], relayer: HARDHAT_KEYS[3] },
      { routes: { "GET /paid": "$0.001", "GET /dear": "$0.5" } },
      "/paid",
    );
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-x402-"));
    stateFile = path.join(dir, "state.json");
    // The funding wallet holds USDC and no ETH.
    const minter = privateKeyToAccount(HARDHAT_KEYS[1]);
    const hash = await createWalletClient({
      account: minter,
      chain: hardhat,
      transport: httpTransport(node.url),
    }).writeContract({ address: usdc, abi: usdcAbi, functionName: "mint", args: [funder.address, 20_000_000n] });
    await publicClient.waitForTransactionReceipt({ hash });
  });

  after(async () => {
    await local?.stop();
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("@x402/fetch opens a channel gaslessly on first use and pays 32 concurrent requests, each exactly once", async () => {
    const scheme = createChannelScheme(schemeOptions());
    const pay = wrapFetchWithPayment(countingFetch, new x402Client().register(NETWORK, scheme));
    const responses = await Promise.all(Array.from({ length: 32 }, (_, i) => pay(`${local.baseUrl}/paid?i=${i}`)));
    expect(responses.map((r) => r.status)).to.deep.equal(Array(32).fill(200));
    const settled = await Promise.all(responses.map((r) => validSettleResponse(r.headers.get("payment-response")!)));
    const bodies = await Promise.all(responses.map((r) => r.json() as Promise<{ path: string }>));
    expect(bodies.map((b) => b.path)).to.deep.equal(Array.from({ length: 32 }, (_, i) => `/paid?i=${i}`));
    // One voucher per request, none refused: each was charged once, and the charged totals the
    // receipts report are 1..32 prices.
    expect(sent).to.deep.equal({ vouchers: 32, invalid: [] });
    expect(settled.every((s) => s.success && s.amount === PRICE.toString() && s.transaction === "")).to.equal(true);
    const totals = settled
      .map((s) => BigInt((s.extra as { chargedTotal: string }).chargedTotal))
      .sort((a, b) => Number(a - b));
    expect(totals).to.deep.equal(Array.from({ length: 32 }, (_, i) => BigInt(i + 1) * PRICE));
    expect(ledger()?.chargedTotal).to.equal(32n * PRICE);
    expect(scheme.spent).to.equal(32n * PRICE);
    expect(scheme.reserved).to.equal(0n);
    // One channel, opened through the relay: the funder signed, paid no gas, and has no ETH.
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as ClientState;
    expect(Object.keys(state.offers)).to.have.length(1);
    expect(Object.values(state.channels)[0]).to.include({ deposit: DEPOSIT.toString(), receipts: 32 });
    expect(await publicClient.getBalance({ address: funder.address })).to.equal(0n);
  });

  it("@x402/axios pays on the same channel, found in the state store", async () => {
    const scheme = createChannelScheme(schemeOptions());
    const api = wrapAxiosWithPayment(axios.create(), new x402Client().register(NETWORK, scheme));
    const before = ledger()!.chargedTotal;
    const answer = await api.get<{ path: string }>(`${local.baseUrl}/paid?via=axios`);
    expect(answer.status).to.equal(200);
    expect(answer.data.path).to.equal("/paid?via=axios");
    const settled = await validSettleResponse(answer.headers["payment-response"] as string);
    expect(settled.amount).to.equal(PRICE.toString());
    expect(ledger()!.chargedTotal - before).to.equal(PRICE);
    const state = JSON.parse(readFileSync(stateFile, "utf8")) as ClientState;
    expect(Object.keys(state.offers)).to.have.length(1);
  });

  it("resynchronizes a stale state through onPaymentResponse ({ recovered: true }) and pays", async () => {
    // A copy of the state, then more payments elsewhere: the copy is one payment behind.
    const stale = path.join(dir, "stale.json");
    copyFileSync(stateFile, stale);
    const ahead = wrapFetchWithPayment(fetch, new x402Client().register(NETWORK, createChannelScheme(schemeOptions())));
    expect((await ahead(`${local.baseUrl}/paid?step=ahead`)).status).to.equal(200);
    const before = ledger()!.chargedTotal;

    const refusals: string[] = [];
    const scheme = createChannelScheme({ ...schemeOptions(), store: fileStateStore(stale) });
    const client = new x402Client()
      .register(NETWORK, scheme)
      .onPaymentResponse(
        async (ctx: PaymentResponseContext) => void refusals.push(ctx.paymentRequired?.error ?? "paid"),
      );
    sent.vouchers = 0;
    const response = await wrapFetchWithPayment(countingFetch, client)(`${local.baseUrl}/paid?step=stale`);
    expect(response.status).to.equal(200);
    // The stale amount was refused with the server's view, the view corrected the state, and the
    // transport paid again at once with a fresh amount.
    expect(refusals).to.have.length(2);
    expect(["voucher_reused", "insufficient_amount"]).to.include(refusals[0]);
    expect(refusals[1]).to.equal("paid");
    expect(sent).to.deep.equal({ vouchers: 2, invalid: [] });
    expect(ledger()!.chargedTotal - before).to.equal(PRICE);
  });

  it("opens with an approval instead (the payer's own transactions) when funding says so", async () => {
    const payer = privateKeyToAccount(HARDHAT_KEYS[4]);
    const wallet = createWalletClient({ account: payer, chain: hardhat, transport: httpTransport(node.url) });
    const minter = privateKeyToAccount(HARDHAT_KEYS[1]);
    const hash = await createWalletClient({
      account: minter,
      chain: hardhat,
      transport: httpTransport(node.url),
    }).writeContract({ address: usdc, abi: usdcAbi, functionName: "mint", args: [payer.address, DEPOSIT] });
    await publicClient.waitForTransactionReceipt({ hash });
    const own = privateKeyToAccount(generatePrivateKey());
    const scheme = createChannelScheme({
      ...schemeOptions(),
      sessionAccount: own,
      funding: { kind: "approve", publicClient, wallet },
      store: undefined,
    });
    const pay = wrapFetchWithPayment(fetch, new x402Client().register(NETWORK, scheme));
    const answers = await Promise.all([pay(`${local.baseUrl}/paid?a=1`), pay(`${local.baseUrl}/paid?a=2`)]);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 200]);
    const [channel] = [...local.server.engine.ledgers()]
      .map((l) => l.record)
      .filter((r) => r.payer.toLowerCase() === payer.address.toLowerCase());
    expect(channel).to.include({ deposit: DEPOSIT });
    expect(scheme.channelState(channel.channelId)).to.include({ chargedKnown: (2n * PRICE).toString() });
    expect(
      await publicClient.readContract({
        address: usdc,
        abi: usdcAbi,
        functionName: "balanceOf",
        args: [payer.address],
      }),
    ).to.equal(0n);
  });

  it("respects x402's spend controls: maxAmountPerPayment, default assets only, nothing signed", async () => {
    const scheme = createChannelScheme(schemeOptions());
    const signedBefore = ledger()!.highestAmount;
    const capped = new x402Client().register(NETWORK, scheme).setSpendControls({ maxAmountPerPayment: "$0.0005" });
    await wrapFetchWithPayment(
      fetch,
      capped,
    )(`${local.baseUrl}/paid`).then(
      () => expect.fail("paid above maxAmountPerPayment"),
      (error: Error) => expect(error.message).to.match(/maxAmountPerPayment/),
    );
    // The default cap ($1) lets $0.001 through and stops $0.5 only above it; /dear is within $1.
    const dear = await wrapFetchWithPayment(fetch, new x402Client().register(NETWORK, scheme))(`${local.baseUrl}/dear`);
    expect(dear.status).to.equal(200);
    // A token findDefaultAsset does not know is refused unless allowed explicitly.
    const unknown = createChannelScheme({ ...schemeOptions(), defaultAssets: [] });
    await wrapFetchWithPayment(
      fetch,
      new x402Client().register(NETWORK, unknown),
    )(`${local.baseUrl}/paid`).then(
      () => expect.fail("paid in an asset that is not a default one"),
      (error: Error) => expect(error.message).to.match(/only default assets/),
    );
    // The plug-in checks the cap x402Client resolves itself, before reserving or signing.
    const direct = createChannelScheme(schemeOptions());
    await direct.createPaymentPayload(2, local.offer as never, { maxAmountPerPayment: "999" }).then(
      () => expect.fail("signed above maxAmountPerPayment"),
      (error: unknown) =>
        expect(error).to.be.instanceOf(PaymentLimitError).and.to.include({ limit: "maxAmountPerPayment" }),
    );
    expect(direct.reserved).to.equal(0n);
    expect(ledger()!.highestAmount - signedBefore).to.equal(500_000n);
    expect(findDefaultAssetIn()("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913", "eip155:8453")).to.deep.equal({
      asset: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
      decimals: 6,
      symbol: "USDC",
    });
    expect(findDefaultAssetIn()(usdc, NETWORK)).to.equal(undefined);
  });

  it("an exact-only @x402/fetch client parses paychan's 402 and pays its exact offer", async () => {
    // The mock token is no default x402 asset: the buyer allows it, as a real buyer would USDC.
    const exactOnly = new x402Client()
      .register(NETWORK, new ExactEvmScheme(funder))
      .setSpendControls({ allowedAssets: [{ network: NETWORK, asset: usdc }] });
    const answer = await fetch(`${local.baseUrl}/paid`);
    const required = new x402HTTPClient(exactOnly).getPaymentRequiredResponse((name) => answer.headers.get(name));
    expect(required).to.deep.equal(validPaymentRequired(answer.headers.get(PAYMENT_REQUIRED_HEADER)!));
    // The relayer key turns the exact fallback on: it is offered after the channel.
    expect(required.accepts.map((a) => a.scheme)).to.deep.equal(["channel", "exact"]);
    const paid = await wrapFetchWithPayment(fetch, exactOnly)(`${local.baseUrl}/paid`);
    expect(paid.status).to.equal(200);
    const settled = await validSettleResponse(paid.headers.get("payment-response")!);
    expect(settled).to.deep.include({ success: true, amount: PRICE.toString() });
    expect(settled.transaction).to.match(/^0x[0-9a-f]{64}$/);
  });
});
