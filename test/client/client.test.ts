import { expect } from "chai";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
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
  createPayingFetch,
  fileStateStore,
  finalizeWithdrawal,
  getChannelStatus,
  openChannel,
  PaymentLimitError,
  ReceiptError,
  requestWithdrawal,
  termsFromOffer,
  topUp,
  type ChannelTerms,
  type PaidResponse,
  type SendingWallet,
} from "../../src/client";
import {
  decodeHeader,
  encodeHeader,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { CHARGE_HEADER } from "../../src/server/proxy";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { runPaychan as cli } from "../helpers/cli";

/**
 * The client library end to end: a real `hardhat node`, the real payment server (SQLite) in front
 * of a tiny upstream, and `createPayingFetch` over real HTTP. Covers the gasless open, 64
 * concurrent paid requests on one channel, spend limits (nothing signed), a restarted client on
 * the same state file, resynchronization after the state file is lost, receipt checks, top-up,
 * permit funding and the payer's exit.
 */

// Roles on the local chain (Hardhat development accounts).
const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const PERMIT_PAYER_KEY: Hex = HARDHAT_KEYS[4];
const PRICE = 1_000n;

const DEPOSIT = 10_000_000n;

/** Counts what reaches the API behind the proxy. */
async function startUpstream(): Promise<{ server: http.Server; url: string; calls: () => number }> {
  let calls = 0;
  const server = http.createServer((req, res) => {
    calls++;
    req.resume();
    req.on("end", () => {
      // /usage reports what the request really cost (an "upto" route): 1,000 + the `n` query value.
      const usage = /^\/usage\?n=(\d+)$/.exec(req.url ?? "");
      const extra = usage ? { [CHARGE_HEADER]: String(1_000 + Number(usage[1])) } : {};
      res.writeHead(200, { "content-type": "application/json", ...extra });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls };
}

/** A fetch that counts the requests the client sends, and those carrying a voucher. */
function countingFetch() {
  const counts = { requests: 0, vouchers: 0, refusedVouchers: [] as string[] };
  const fetchImpl: typeof fetch = async (input, init) => {
    counts.requests++;
    const hasVoucher = new Headers(init?.headers).has(PAYMENT_SIGNATURE_HEADER);
    if (hasVoucher) counts.vouchers++;
    const response = await fetch(input, init);
    if (hasVoucher && response.status !== 200) {
      const required = decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER) ?? "e30=");
      counts.refusedVouchers.push(required.error ?? String(response.status));
    }
    return response;
  };
  return { counts, fetchImpl };
}

describe("client: createPayingFetch and channel operations (hardhat node, real server)", function () {
  this.timeout(90_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let server: PaymentServer;
  let dir: string;
  let baseUrl: string;
  let usdc: Address;
  let contract: Address;
  let terms: ChannelTerms;
  let channelId: bigint;
  let stateFile: string;
  let started = 0;
  const funder = privateKeyToAccount(generatePrivateKey());
  const session = privateKeyToAccount(generatePrivateKey());
  const minter = privateKeyToAccount(MINTER_KEY);

  const wallet = (key: Hex): SendingWallet =>
    createWalletClient({ account: privateKeyToAccount(key), chain: hardhat, transport: httpTransport(node.url) });
  const ledger = () => server.store.getLedger(channelId);

  before(async () => {
    started = Date.now();
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    upstream = await startUpstream();
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-client-"));
    stateFile = path.join(dir, "client-state.json");
    const configFile = path.join(dir, "paychan.config.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        upstream: upstream.url,
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract,
        token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
        routes: {
          "GET /paid": "$0.001",
          "GET /dear": "$0.5",
          "GET /free": null,
          "GET /usage": { price: "$0.005", pricing: "upto" },
        },
        minDeposit: "$1",
        minWithdrawDelay: 3600,
        pollIntervalMs: 200,
        retryWindowMs: 2_000,
        database: { path: "paychan.db", durable: true },
      }),
    );
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };
    server = await createPaymentServer(loadConfig(configFile, env), { logger: createLogger({ level: "warn" }) });
    baseUrl = `http://127.0.0.1:${(await server.start()).port}`;

    // The funding wallet holds USDC and no ETH at all.
    const hash = await wallet(MINTER_KEY).writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [funder.address, 50_000_000n],
      account: minter,
      chain: hardhat,
    });
    await publicClient.waitForTransactionReceipt({ hash });
  });

  after(async () => {
    await server?.stop().catch(() => undefined);
    if (upstream) {
      upstream.server.closeAllConnections();
      await new Promise<void>((resolve) => upstream.server.close(() => resolve()));
    }
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    expect(Date.now() - started).to.be.below(90_000);
  });

  it("opens a channel gaslessly on the first 402 (funder signs one authorization, no ETH) and pays", async () => {
    let opens = 0;
    const { counts, fetchImpl } = countingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
      store: fileStateStore(stateFile),
      channel: async (offer, url) => {
        opens++;
        terms = termsFromOffer(offer, url);
        const opened = await openChannel({
          terms,
          funding: { kind: "relay", payer: funder },
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        return opened.channelId;
      },
    });
    // Two at once: the channel is opened once and shared.
    const [a, b] = await Promise.all([pay(`${baseUrl}/paid?x=1`), pay(`${baseUrl}/paid?x=2`)]);
    expect([a.status, b.status]).to.deep.equal([200, 200]);
    expect(opens).to.equal(1);
    channelId = a.payment!.channelId;
    expect(b.payment!.channelId).to.equal(channelId);
    expect(a.payment!.receiptValid).to.equal(true);
    expect(((await a.json()) as { path: string }).path).to.equal("/paid?x=1");
    await b.arrayBuffer();
    expect(await publicClient.getBalance({ address: funder.address })).to.equal(0n);
    expect(counts.refusedVouchers).to.deep.equal([]);
    expect(ledger()?.chargedTotal).to.equal(2n * PRICE);
    // Free routes pass straight through, unpaid.
    const free = await pay(`${baseUrl}/free`);
    expect(free.status).to.equal(200);
    expect(free.payment).to.equal(undefined);
    const status = await getChannelStatus({ publicClient, contract, channelId, store: fileStateStore(stateFile) });
    expect(status).to.deep.include({ deposit: DEPOSIT, payer: funder.address, signer: session.address });
    expect(status?.client?.chargedKnown).to.equal(2n * PRICE);
  });

  it("pays 64 concurrent requests on one channel: all 200, charged exactly 64 × price", async () => {
    const before = ledger()!.chargedTotal;
    const upstreamBefore = upstream.calls();
    const { counts, fetchImpl } = countingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE,
      maxTotal: 64n * PRICE,
      store: fileStateStore(stateFile),
    });
    const warm = await pay(`${baseUrl}/paid`); // learns the price (one unpaid round trip) and pays
    expect(warm.status).to.equal(200);
    const responses: PaidResponse[] = await Promise.all(
      Array.from({ length: 63 }, (_, i) => pay(`${baseUrl}/paid?i=${i}`)),
    );
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    expect(responses.map((r) => r.status)).to.deep.equal(new Array(63).fill(200));
    expect(responses.every((r) => r.payment?.receiptValid && !r.payment.resynced)).to.equal(true);
    expect(counts.vouchers).to.equal(64);
    expect(counts.refusedVouchers).to.deep.equal([]);
    expect(upstream.calls() - upstreamBefore).to.equal(64);
    expect(ledger()!.chargedTotal - before).to.equal(64n * PRICE);
    expect(pay.spent).to.equal(64n * PRICE);
    expect(pay.reserved).to.equal(0n);
    // Every amount distinct, and the best voucher covers exactly what was charged.
    const amounts = new Set(responses.map((r) => r.payment!.amount));
    expect(amounts.size).to.equal(63);
    expect(ledger()!.highestAmount).to.equal(ledger()!.chargedTotal);
    // The budget is now exhausted: the next request is refused before signing.
    const vouchersBefore = counts.vouchers;
    let refused: unknown;
    await pay(`${baseUrl}/paid`).catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(PaymentLimitError);
    expect((refused as PaymentLimitError).limit).to.equal("maxTotal");
    expect(counts.vouchers).to.equal(vouchersBefore);
  });

  it("refuses a price above maxPerRequest without signing or sending a voucher", async () => {
    const upstreamBefore = upstream.calls();
    const chargedBefore = ledger()!.chargedTotal;
    const { counts, fetchImpl } = countingFetch();
    let signed = 0;
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: {
        address: session.address,
        signTypedData: (async (...args: Parameters<typeof session.signTypedData>) => {
          signed++;
          return session.signTypedData(...args);
        }) as typeof session.signTypedData,
      },
      channel: channelId,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
    });
    let error: unknown;
    await pay(`${baseUrl}/dear`).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(PaymentLimitError);
    expect((error as PaymentLimitError).limit).to.equal("maxPerRequest");
    expect((error as PaymentLimitError).price).to.equal(500_000n);
    expect(signed).to.equal(0);
    expect(counts).to.deep.include({ requests: 1, vouchers: 0 });
    expect(upstream.calls()).to.equal(upstreamBefore);
    expect(ledger()!.chargedTotal).to.equal(chargedBefore);
  });

  it("continues after a restart on the same state file: no voucher_reused, no amount signed twice", async () => {
    const persisted = JSON.parse(readFileSync(stateFile, "utf8")) as {
      channels: Record<string, { signedMax: string }>;
    };
    const signedBefore = BigInt(Object.values(persisted.channels)[0].signedMax);
    const { counts, fetchImpl } = countingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      channel: async () => {
        throw new Error("the restarted client must reuse the stored channel");
      },
      maxPerRequest: PRICE,
      maxTotal: 1_000_000n,
      store: fileStateStore(stateFile),
    });
    const first = await pay(`${baseUrl}/paid?restart=0`);
    expect(first.status).to.equal(200);
    expect(first.payment!.amount > signedBefore).to.equal(true);
    const chargedBefore = ledger()!.chargedTotal;
    // Another restart, this time paying a burst as well.
    const { counts: counts2, fetchImpl: fetch2 } = countingFetch();
    const again = createPayingFetch(fetch2, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE,
      maxTotal: 1_000_000n,
      store: fileStateStore(stateFile),
    });
    const seen = new Set<bigint>();
    for (let i = 0; i < 10; i++) {
      const r = await again(`${baseUrl}/paid?restart=${i + 1}`);
      expect(r.status).to.equal(200);
      seen.add(r.payment!.amount);
    }
    const burst = await Promise.all(Array.from({ length: 16 }, (_, i) => again(`${baseUrl}/paid?burst=${i}`)));
    expect(burst.map((r) => r.status)).to.deep.equal(new Array(16).fill(200));
    for (const r of burst) seen.add(r.payment!.amount);
    expect(seen.size).to.equal(26);
    expect(counts2.refusedVouchers).to.deep.equal([]);
    expect(counts2.vouchers).to.equal(26);
    expect(ledger()!.chargedTotal - chargedBefore).to.equal(26n * PRICE);
    expect(ledger()!.highestAmount).to.equal(ledger()!.chargedTotal);
    expect(again.channelState(channelId)?.chargedKnown).to.equal(ledger()!.chargedTotal.toString());
    expect(counts.refusedVouchers).to.deep.equal([]);
    expect(first.payment!.resynced).to.equal(false);
  });

  it("resynchronizes from the 402 channel view after the state file is deleted", async () => {
    rmSync(stateFile);
    const chargedBefore = ledger()!.chargedTotal;
    const { counts, fetchImpl } = countingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE,
      maxTotal: 1_000_000n,
      store: fileStateStore(stateFile),
    });
    const first = await pay(`${baseUrl}/paid?after=loss`);
    expect(first.status).to.equal(200);
    expect(first.payment!.resynced).to.equal(true);
    expect(counts.refusedVouchers).to.have.length(1);
    expect(["insufficient_amount", "voucher_reused"]).to.include(counts.refusedVouchers[0]);
    for (let i = 0; i < 5; i++) expect((await pay(`${baseUrl}/paid?after=${i}`)).payment?.resynced).to.equal(false);
    expect(counts.refusedVouchers).to.have.length(1);
    expect(ledger()!.chargedTotal - chargedBefore).to.equal(6n * PRICE);
    expect(existsSync(stateFile)).to.equal(true);
    expect(pay.channelState(channelId)?.receipts).to.equal(6);
  });

  it("pays usage-priced (upto) routes: reserves the maximum, is charged what the receipt says", async () => {
    const chargedBefore = ledger()!.chargedTotal;
    const { counts, fetchImpl } = countingFetch();
    const pay = createPayingFetch(fetchImpl, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: 5_000n,
      maxTotal: 1_000_000n,
      store: fileStateStore(stateFile),
    });
    const responses = await Promise.all(Array.from({ length: 8 }, (_, i) => pay(`${baseUrl}/usage?n=${i * 7}`)));
    expect(responses.map((r) => r.status)).to.deep.equal(new Array(8).fill(200));
    const charges = responses.map((r) => r.payment!.charge);
    expect(charges).to.deep.equal(Array.from({ length: 8 }, (_, i) => BigInt(1_000 + i * 7)));
    const sum = charges.reduce((a, b) => a + b, 0n);
    expect(pay.spent).to.equal(sum);
    expect(ledger()!.chargedTotal - chargedBefore).to.equal(sum);
    // Fixed-price requests continue on the same channel without a refusal.
    for (let i = 0; i < 5; i++) expect((await pay(`${baseUrl}/paid?after-usage=${i}`)).status).to.equal(200);
    expect(counts.refusedVouchers).to.deep.equal([]);
  });

  it("rejects a tampered receipt (throws, or flags with receiptPolicy: flag)", async () => {
    const tampering: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      const header = response.headers.get(PAYMENT_RESPONSE_HEADER);
      if (!header) return response;
      const paid = decodeHeader<SettleResponse>(header);
      const forged = { ...paid, extra: { ...paid.extra, receipt: { ...paid.extra.receipt, charge: "1" } } };
      const headers = new Headers(response.headers);
      headers.set(PAYMENT_RESPONSE_HEADER, encodeHeader(forged));
      return new Response(await response.arrayBuffer(), { status: response.status, headers });
    };
    const strict = createPayingFetch(tampering, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE,
      maxTotal: 1_000_000n,
    });
    let error: unknown;
    await strict(`${baseUrl}/paid?tampered=1`).catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(ReceiptError);
    const lenient = createPayingFetch(tampering, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE,
      maxTotal: 1_000_000n,
      receiptPolicy: "flag",
    });
    const flagged = await lenient(`${baseUrl}/paid?tampered=2`);
    expect(flagged.status).to.equal(200);
    expect(flagged.payment?.receiptValid).to.equal(false);
    expect(flagged.payment?.receiptProblem).to.match(/receiptSigner/);
  });

  it("tops up gaslessly through the relay", async () => {
    const result = await topUp({ terms, funding: { kind: "relay", payer: funder }, channelId, amount: 5_000_000n });
    expect(result.deposit).to.equal(DEPOSIT + 5_000_000n);
    const status = await getChannelStatus({ publicClient, contract, channelId });
    expect(status?.deposit).to.equal(DEPOSIT + 5_000_000n);
    expect(await publicClient.getBalance({ address: funder.address })).to.equal(0n);
  });

  it("CLI: paychan open (gasless), pay, a refused price (exit 3) and status", async () => {
    const buyerKey = generatePrivateKey();
    const buyer = privateKeyToAccount(buyerKey);
    const mint = await wallet(MINTER_KEY).writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [buyer.address, 3_000_000n],
      account: minter,
      chain: hardhat,
    });
    await publicClient.waitForTransactionReceipt({ hash: mint });
    const state = path.join(dir, "cli-state");
    const buyerEnv = { PAYCHAN_PAYER_PRIVATE_KEY: buyerKey };
    const opened = await cli(["open", `${baseUrl}/paid`, "--deposit", "$2", "--state", state], buyerEnv);
    expect(opened.code, opened.stderr).to.equal(0);
    const channel = JSON.parse(opened.stdout) as { channelId: string; deposit: string };
    expect(channel.deposit).to.equal("2000000");
    for (let i = 0; i < 2; i++) {
      const paid = await cli(["pay", `${baseUrl}/paid?cli=${i}`, "--state", state], {});
      expect(paid.code, paid.stderr).to.equal(0);
      expect(JSON.parse(paid.stdout)).to.deep.include({ ok: true, path: `/paid?cli=${i}` });
      expect(paid.stderr).to.match(/paid 1000 .* receipt verified/);
    }
    const refused = await cli(["pay", `${baseUrl}/dear`, "--state", state, "--max-per-request", "$0.01"], {});
    expect(refused.code).to.equal(3);
    expect(refused.stderr).to.match(/maxPerRequest/);
    const status = await cli(["status", "--rpc", node.url, "--state", state], {});
    expect(status.code, status.stderr).to.equal(0);
    const line = JSON.parse(status.stdout.trim()) as {
      channelId: string;
      chargedKnown: string;
      onChain: { deposit: string };
    };
    expect(line).to.deep.include({ channelId: channel.channelId, chargedKnown: "2000", receipts: 2 });
    expect(line.onChain.deposit).to.equal("2000000");
  });

  it("opens with an EIP-2612 permit, tops up with approve, requests and finalizes a withdrawal", async () => {
    const payerWallet = wallet(PERMIT_PAYER_KEY);
    const payer = payerWallet.account.address;
    const mint = await wallet(MINTER_KEY).writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [payer, 5_000_000n],
      account: minter,
      chain: hardhat,
    });
    await publicClient.waitForTransactionReceipt({ hash: mint });
    const key = privateKeyToAccount(generatePrivateKey());
    const funding = { kind: "permit", publicClient, wallet: payerWallet } as const;
    const opened = await openChannel({ terms, funding, signer: key.address, amount: 2_000_000n, withdrawDelay: 3600 });
    const topped = await topUp({
      terms,
      funding: { kind: "approve", publicClient, wallet: payerWallet },
      channelId: opened.channelId,
      amount: 1_000_000n,
    });
    expect(topped.deposit).to.equal(3_000_000n);
    const params = { publicClient, wallet: payerWallet, contract, channelId: opened.channelId };
    const { withdrawReadyAt } = await requestWithdrawal(params);
    expect(withdrawReadyAt).to.be.above(0);
    // Last test: moving the chain's clock ahead would expire the relay authorizations of later ones.
    await publicClient.request({ method: "evm_increaseTime" as never, params: [3601] as never });
    await publicClient.request({ method: "evm_mine" as never });
    await finalizeWithdrawal(params);
    const status = await getChannelStatus({ publicClient, contract, channelId: opened.channelId });
    expect(status?.status).to.equal("closed");
  });
});
