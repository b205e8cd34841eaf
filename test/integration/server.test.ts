import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  parseEventLogs,
  parseSignature,
  toHex,
  zeroAddress,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import {
  openAuthorizationNonce,
  receiveWithAuthorizationTypedData,
  topUpAuthorizationNonce,
} from "../../src/protocol/authorization";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { verifyReceipt, type SignedReceipt } from "../../src/protocol/receipt";
import { voucherDomain, voucherTypedData, type VoucherDomain } from "../../src/protocol/voucher";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { CHARGE_HEADER } from "../../src/server/proxy";
import { openSqliteStore } from "../../src/store/sqlite";
import { freePort, startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * End to end against a real `hardhat node` over JSON-RPC and real HTTP: contracts deployed by the
 * deploy scripts, a channel opened on-chain with a session key, 1,000 paid requests (a burst of 32
 * concurrent ones among them) through the proxy, a restart as a separate `paychan server` process
 * on the same SQLite file, the gasless relay, /metrics and /healthz, and finally the store checked
 * against what the client was told.
 */

// Hardhat's well-known development accounts (funded with ETH by the node, worthless anywhere else).
const PAYER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const CHAIN_ID = 31337;
const PRICE = 1_000n; // "$0.001"
const UPTO_PRICE = 5_000n; // "$0.005"
const DEPOSIT = 100_000_000n; // 100 USDC
const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** The API behind the proxy. /usage charges by "work done", reported in x-paychan-charge. */
async function startUpstream(): Promise<{ server: http.Server; url: string; calls: () => number }> {
  let calls = 0;
  const server = http.createServer((req, res) => {
    calls++;
    req.resume();
    req.on("end", () => {
      if (req.url?.startsWith("/usage")) {
        // Never a multiple of PRICE below the maximum, so the client's next amounts stay unused.
        const charge = 1_001n + BigInt(calls % 3_000);
        res.writeHead(200, { "content-type": "application/json", [CHARGE_HEADER]: charge.toString() });
        res.end(JSON.stringify({ tokens: Number(charge) }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ city: "Lisbon", temp: 21, path: req.url }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls: () => calls };
}

/**
 * A paying client: learns the terms from a 402, then pays each request with a voucher for
 * (what it knows was charged) + (the route's price), and keeps every PAYMENT-RESPONSE.
 */
class PayingClient {
  offer: ChannelOffer | undefined;
  /** Highest voucher amount signed. */
  highest = 0n;
  /** Charged total as last reported by the server. */
  charged = 0n;
  readonly charges: bigint[] = [];
  readonly receipts: SignedReceipt[] = [];
  private readonly used = new Set<bigint>();

  constructor(
    public baseUrl: string,
    private readonly signer: PrivateKeyAccount,
    readonly channelId: bigint,
    private readonly domain: VoucherDomain,
  ) {}

  async learnTerms(routePath: string): Promise<PaymentRequired> {
    const res = await fetch(this.baseUrl + routePath);
    expect(res.status).to.equal(402);
    const terms = decodeHeader<PaymentRequired>(res.headers.get(PAYMENT_REQUIRED_HEADER) as string);
    expect(await res.json()).to.deep.equal(terms);
    this.offer = terms.accepts[0];
    return terms;
  }

  /** The next unused amount paying `price` on top of the known charged total. */
  nextAmount(price: bigint, ahead = 0n): bigint {
    let amount = this.charged + ahead + price;
    while (this.used.has(amount)) amount++;
    this.used.add(amount);
    return amount;
  }

  async header(amount: bigint): Promise<string> {
    const signature = await this.signer.signTypedData(
      voucherTypedData(this.domain, { channelId: this.channelId, cumulativeAmount: amount }),
    );
    if (amount > this.highest) this.highest = amount;
    return encodePaymentSignature(this.offer as ChannelOffer, {
      channelId: channelIdHex(this.channelId),
      amount: amount.toString(),
      signature,
    });
  }

  /** Sends one request with a ready header; records the payment; returns the response. */
  async send(routePath: string, header: string, method = "GET"): Promise<Response> {
    const res = await fetch(this.baseUrl + routePath, { method, headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
    const paid = res.headers.get(PAYMENT_RESPONSE_HEADER);
    if (res.status === 200 && paid) {
      const response = decodeHeader<SettleResponse>(paid);
      this.charges.push(BigInt(response.amount));
      this.receipts.push(response.extra.receipt);
      const total = BigInt(response.extra.chargedTotal);
      if (total > this.charged) this.charged = total;
    }
    return res;
  }

  /** Pays one request; fails the test unless it is served. */
  async pay(routePath: string, price = PRICE, method = "GET"): Promise<SettleResponse> {
    const res = await this.send(routePath, await this.header(this.nextAmount(price)), method);
    const body = await res.text();
    expect(res.status, `${method} ${routePath}: ${body}`).to.equal(200);
    return decodeHeader<SettleResponse>(res.headers.get(PAYMENT_RESPONSE_HEADER) as string);
  }

  /** `n` requests at once on the channel, each voucher paying one more price than the last. */
  async burst(routePath: string, n: number): Promise<number[]> {
    const headers: string[] = [];
    for (let i = 0; i < n; i++) headers.push(await this.header(this.nextAmount(PRICE, BigInt(i) * PRICE)));
    const responses = await Promise.all(headers.map((h) => this.send(routePath, h)));
    await Promise.all(responses.map((r) => r.arrayBuffer()));
    return responses.map((r) => r.status);
  }
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The value of one sample line of a Prometheus text, or undefined. */
function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("paychan server end to end (hardhat node, real HTTP)", function () {
  this.timeout(90_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let dir: string;
  let configFile: string;
  let usdc: Address;
  let contract: Address;
  let domain: VoucherDomain;
  let env: NodeJS.ProcessEnv;
  let inProcess: PaymentServer | undefined;
  let child: ChildProcess | undefined;
  let childOutput = "";
  let childPort: number;
  let client: PayingClient;
  const session = privateKeyToAccount(generatePrivateKey());
  const payer = privateKeyToAccount(PAYER_KEY);
  const payee = privateKeyToAccount(PAYEE_KEY).address;
  let started = 0;
  let gaslessReceipts: SignedReceipt[] = [];
  let gaslessCharged = 0n;

  async function send(
    from: PrivateKeyAccount,
    to: Address,
    abi: typeof usdcAbi | typeof paymentChannelsAbi,
    functionName: string,
    args: unknown[],
  ) {
    const wallet = createWalletClient({ account: from, chain: hardhat, transport: httpTransport(node.url) });
    const request = { address: to, abi, functionName, args } as unknown as Parameters<typeof wallet.writeContract>[0];
    const hash = await wallet.writeContract(request);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    expect(receipt.status).to.equal("success");
    return receipt;
  }

  before(async () => {
    started = Date.now();
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    domain = voucherDomain(CHAIN_ID, contract);
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    upstream = await startUpstream();
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-server-"));
    childPort = await freePort();
    configFile = path.join(dir, "paychan.config.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        upstream: upstream.url,
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract,
        token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
        routes: { "GET /weather": "$0.001", "POST /usage": { price: "$0.005", pricing: "upto" }, "GET /free": null },
        minDeposit: "$1",
        minWithdrawDelay: 3600,
        pollIntervalMs: 200,
        retryWindowMs: 2_000,
        database: { path: "paychan.db", durable: true },
      }),
    );
    env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY, PAYCHAN_LOG_LEVEL: "info" };

    // The payer funds a channel for the payee; a session key signs its vouchers.
    await send(payer, usdc, usdcAbi, "mint", [payer.address, DEPOSIT]);
    await send(payer, usdc, usdcAbi, "approve", [contract, DEPOSIT]);
    const opened = await send(payer, contract, paymentChannelsAbi, "open", [
      payee,
      usdc,
      session.address,
      86_400,
      DEPOSIT,
    ]);
    const [event] = parseEventLogs({ abi: paymentChannelsAbi, eventName: "ChannelOpened", logs: opened.logs });
    client = new PayingClient("", session, event.args.channelId, domain);
  });

  after(async () => {
    await inProcess?.stop().catch(() => undefined);
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    if (upstream) {
      upstream.server.closeAllConnections();
      await new Promise<void>((resolve) => upstream.server.close(() => resolve()));
    }
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    // The whole suite, node start-up included, must stay under 90 s.
    expect(Date.now() - started).to.be.below(90_000);
  });

  it("serves 500 paid requests in process, including a burst of 32 concurrent ones on one channel", async () => {
    const config = loadConfig(configFile, env);
    inProcess = await createPaymentServer(config, { logger: createLogger({ level: "warn" }) });
    const address = await inProcess.start();
    client.baseUrl = `http://127.0.0.1:${address.port}`;

    const terms = await client.learnTerms("/weather");
    expect(terms.accepts[0]).to.deep.include({
      scheme: "channel",
      network: "eip155:31337",
      amount: "1000",
      payTo: payee,
    });
    expect(terms.accepts[0].extra).to.deep.include({ contract, relay: "/paychan/relay", minWithdrawDelay: 3600 });

    // Free routes need no payment.
    expect((await fetch(`${client.baseUrl}/free`)).status).to.equal(200);

    for (let i = 0; i < 400; i++) await client.pay("/weather");
    for (let i = 0; i < 20; i++) {
      const paid = await client.pay("/usage", UPTO_PRICE, "POST");
      expect(BigInt(paid.amount)).to.be.within(1_001n, UPTO_PRICE);
    }
    const statuses = await client.burst("/weather", 32);
    expect(statuses).to.deep.equal(new Array(32).fill(200));
    for (let i = 0; i < 48; i++) await client.pay("/weather");
    expect(client.charges).to.have.length(500);

    await inProcess.stop();
    inProcess = undefined;
  });

  it("restarts as a `paychan server` process on the same database and keeps the ledger", async () => {
    // The same file with a fixed port, run through the CLI shim exactly as an operator would.
    const file = path.join(dir, "paychan.child.json");
    const json = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...json, listen: { host: "127.0.0.1", port: childPort } }));
    child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "paychan.js"), "server", "--config", file], {
      cwd: dir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (c: Buffer) => (childOutput += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (childOutput += c.toString()));
    client.baseUrl = `http://127.0.0.1:${childPort}`;
    await waitFor("the restarted server to be healthy", async () => {
      if (child?.exitCode !== null) throw new Error(`paychan server exited:\n${childOutput}`);
      const res = await fetch(`${client.baseUrl}/healthz`);
      return res.status === 200 ? true : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${childOutput}`);
    });

    // The restored ledger refuses an unused amount below what was already charged: a server that
    // forgot its ledger would take it and serve for free.
    // (charged − 1 is unused: the last two vouchers were charged − PRICE and charged.)
    const stale = await client.send("/weather", await client.header(client.charged - 1n));
    expect(stale.status).to.equal(402);
    const refusal = (await stale.json()) as PaymentRequired;
    expect(refusal.error).to.equal("insufficient_amount");
    expect(refusal.accepts[0].extra.channelState?.chargedTotal).to.equal(client.charged.toString());
    // An old voucher replayed after the retry window is refused as reused.
    const first = await client.send("/weather", await client.header(PRICE));
    expect(first.status).to.equal(402);
    expect(((await first.json()) as PaymentRequired).error).to.equal("voucher_reused");

    for (let i = 0; i < 200; i++) await client.pay("/weather");
    for (let i = 0; i < 10; i++) await client.pay("/usage", UPTO_PRICE, "POST");
    expect(await client.burst("/weather", 32)).to.deep.equal(new Array(32).fill(200));
    for (let i = 0; i < 258; i++) await client.pay("/weather");
    expect(client.charges).to.have.length(1_000);
  });

  it("opens and tops up a channel through the gasless relay for a payer without ETH", async () => {
    const gasless = privateKeyToAccount(generatePrivateKey());
    await send(payer, usdc, usdcAbi, "mint", [gasless.address, 20_000_000n]);
    expect(await publicClient.getBalance({ address: gasless.address })).to.equal(0n);
    const tokenDomain = { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: usdc };
    const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3_600);

    const authorize = async (value: bigint, nonce: Hex, salt: Hex) => {
      const signature = await gasless.signTypedData(
        receiveWithAuthorizationTypedData(tokenDomain, {
          from: gasless.address,
          to: contract,
          value,
          validAfter: 0n,
          validBefore,
          nonce,
        }),
      );
      const { r, s, v } = parseSignature(signature);
      return { validAfter: "0", validBefore: validBefore.toString(), salt, v: Number(v), r, s };
    };
    const post = (op: string, body: unknown) =>
      fetch(`${client.baseUrl}/paychan/relay/${op}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });

    // Terms the server does not accept are refused before any gas is spent.
    const salt0 = toHex(randomBytes(32));
    const shortDelay = await post("open", {
      payer: gasless.address,
      signer: zeroAddress,
      withdrawDelay: 1_000,
      amount: "10000000",
      authorization: await authorize(
        10_000_000n,
        openAuthorizationNonce({ payee, signer: zeroAddress, withdrawDelay: 1_000, salt: salt0 }),
        salt0,
      ),
    });
    expect(shortDelay.status).to.equal(422);
    expect(((await shortDelay.json()) as { error: string }).error).to.equal("withdraw_delay_out_of_range");
    const forged = await post("open", {
      payer: gasless.address,
      signer: zeroAddress,
      withdrawDelay: 86_400,
      amount: "10000001", // not what was signed
      authorization: await authorize(
        10_000_000n,
        openAuthorizationNonce({ payee, signer: zeroAddress, withdrawDelay: 86_400, salt: salt0 }),
        salt0,
      ),
    });
    expect(forged.status).to.equal(422);
    expect(((await forged.json()) as { error: string }).error).to.equal("invalid_authorization");

    const nonce = openAuthorizationNonce({ payee, signer: zeroAddress, withdrawDelay: 86_400, salt: salt0 });
    const opened = await post("open", {
      payer: gasless.address,
      signer: zeroAddress,
      withdrawDelay: 86_400,
      amount: "10000000",
      authorization: await authorize(10_000_000n, nonce, salt0),
    });
    const result = (await opened.json()) as { channelId: Hex; txHash: Hex; deposit: string };
    expect(opened.status, JSON.stringify(result)).to.equal(200);
    expect(result.deposit).to.equal("10000000");
    const tx = await publicClient.getTransactionReceipt({ hash: result.txHash });
    expect(tx.from.toLowerCase()).to.equal(privateKeyToAccount(RELAYER_KEY).address.toLowerCase());
    expect(await publicClient.getBalance({ address: gasless.address })).to.equal(0n);

    // The payer (signer zero: the payer signs) pays requests on the new channel right away.
    const gaslessClient = new PayingClient(client.baseUrl, gasless, BigInt(result.channelId), domain);
    await gaslessClient.learnTerms("/weather");
    for (let i = 0; i < 5; i++) await gaslessClient.pay("/weather");

    const salt1 = toHex(randomBytes(32));
    const topped = await post("topup", {
      channelId: result.channelId,
      amount: "5000000",
      authorization: await authorize(5_000_000n, topUpAuthorizationNonce(BigInt(result.channelId), salt1), salt1),
    });
    const toppedBody = (await topped.json()) as { deposit: string };
    expect(topped.status, JSON.stringify(toppedBody)).to.equal(200);
    expect(toppedBody.deposit).to.equal("15000000");
    expect(await publicClient.getBalance({ address: gasless.address })).to.equal(0n);
    gaslessReceipts = gaslessClient.receipts;
    gaslessCharged = gaslessClient.charged;
  });

  it("reports health and Prometheus metrics", async () => {
    type Health = {
      status: string;
      store: { ok: boolean };
      chain: { healthy: boolean; lagBlocks: number; chainId: number };
    };
    // The watcher catches up with the blocks the previous tests mined on its next poll.
    const health = await waitFor("the watcher within a block of the head", async () => {
      const report = (await (await fetch(`${client.baseUrl}/healthz`)).json()) as Health;
      return report.chain.lagBlocks <= 1 ? report : undefined;
    });
    expect(health.status).to.equal("ok");
    expect(health.store.ok).to.equal(true);
    expect(health.chain).to.deep.include({ healthy: true, chainId: CHAIN_ID });
    expect(health.chain.lagBlocks).to.be.at.most(1);

    // The watcher picks the top-up up from its event; unclaimed money is everything charged.
    const expectedUnclaimed = client.charged + gaslessCharged;
    const text = await waitFor("metrics after the top-up", async () => {
      const body = await (await fetch(`${client.baseUrl}/metrics`)).text();
      return metric(body, "paychan_watcher_lag_blocks") === 0 ? body : undefined;
    });
    expect(metric(text, "paychan_vouchers_accepted_total")).to.equal(500 + 5);
    expect(metric(text, 'paychan_vouchers_rejected_total{reason="insufficient_amount"}')).to.equal(1);
    expect(metric(text, 'paychan_vouchers_rejected_total{reason="voucher_reused"}')).to.equal(1);
    expect(metric(text, "paychan_voucher_verification_seconds_count")).to.equal(505);
    // Each request-path write waited for a WAL fsync off the event loop, and one fsync may cover
    // several: 505 vouchers plus the 10 /usage charges lowered after the upstream replied.
    expect(metric(text, "paychan_store_fsync_seconds_count")).to.be.within(1, 505 + 10);
    expect(metric(text, `paychan_unclaimed_atomic{token="${usdc.toLowerCase()}"}`)).to.equal(Number(expectedUnclaimed));
    expect(metric(text, 'paychan_channels{status="open"}')).to.equal(2);
    expect(metric(text, 'paychan_relay_transactions_total{operation="open",result="ok"}')).to.equal(1);
    expect(metric(text, 'paychan_relay_transactions_total{operation="topup",result="ok"}')).to.equal(1);
    expect(metric(text, 'paychan_relay_transactions_total{operation="open",result="rejected"}')).to.equal(2);
    expect(metric(text, 'paychan_requests_total{outcome="paid"}')).to.equal(505);
  });

  it("claims a channel at once when its payer asks to withdraw (the settler runs in the server process)", async () => {
    await send(payer, contract, paymentChannelsAbi, "requestWithdrawal", [client.channelId]);
    const claimed = await waitFor("the in-process settler to claim the withdrawing channel", async () => {
      const channel = await publicClient.readContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "getChannel",
        args: [client.channelId],
      });
      return channel.claimed > 0n ? channel.claimed : undefined;
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${childOutput}`);
    });
    expect(claimed).to.equal(client.charged);
    expect(childOutput).to.include('"msg":"withdrawal requested; claiming now"');
    // The settler's figures are on the server's /metrics. The chain shows the claim as soon as
    // the block is mined; the settler counts the batch once it has read the receipt, a poll later.
    const text = await waitFor("the settler's batch on /metrics", async () => {
      const body = await (await fetch(`${client.baseUrl}/metrics`)).text();
      return (metric(body, "paychan_settler_batches_sent") ?? 0) >= 1 ? body : undefined;
    });
    expect(metric(text, "paychan_settler_batches_sent")).to.be.at.least(1);
    expect(metric(text, "paychan_settler_channels_claimed")).to.be.at.least(1);
    expect(text).to.include("# TYPE paychan_settler_unclaimed_atomic gauge");
  });

  it("stops gracefully on SIGTERM, and the store matches what the client was told", async () => {
    const exited = new Promise<number | null>((resolve) => child?.once("exit", (code) => resolve(code)));
    child?.kill("SIGTERM");
    expect(await exited, childOutput).to.equal(0);
    expect(childOutput).to.include('"msg":"paychan server stopped"');

    const store = openSqliteStore({ path: path.join(dir, "paychan.db") });
    try {
      const ledger = store.getLedger(client.channelId);
      const sum = client.charges.reduce((a, b) => a + b, 0n);
      expect(ledger?.chargedTotal).to.equal(sum);
      expect(ledger?.highestAmount).to.equal(sum);
      expect(client.highest).to.equal(sum);
      expect(client.charged).to.equal(sum);
      expect(store.loadVoucherAmounts(client.channelId)).to.have.length(1_000);

      const signer = privateKeyToAccount(PAYEE_KEY).address;
      const all = [...client.receipts, ...gaslessReceipts];
      expect(all).to.have.length(1_005);
      const verdicts = await Promise.all(all.map((r) => verifyReceipt(r, signer, CHAIN_ID, contract)));
      expect(verdicts.every(Boolean)).to.equal(true);
      // Each stored voucher carries the receipt the client got.
      const last = client.receipts[client.receipts.length - 1];
      const stored = store.findVoucher(client.channelId, BigInt(last.voucherAmount));
      expect(JSON.parse(stored?.receipt ?? "null")).to.deep.equal(last);
    } finally {
      await store.close();
    }
  });
});
