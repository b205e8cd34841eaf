import { expect } from "chai";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { artifacts } from "hardhat";
import {
  createPublicClient,
  createTestClient,
  createWalletClient,
  http,
  maxUint256,
  parseEventLogs,
  type Address,
  type Hex,
  type PublicClient,
  type TestClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { createChainClient } from "../../src/chain/client";
import { readChannel } from "../../src/chain/readChannel";
import { ChannelWatcher } from "../../src/chain/watcher";
import { voucherDomain, voucherTypedData } from "../../src/protocol/voucher";
import { claimsOfEvent } from "../../src/chain/events";
import { SETTLER_KEY_ENV, type SettlerPolicy } from "../../src/shared/config";
import { TransactionSender } from "../../src/chain/sender";
import { GAS_PRICE_ORACLE, Settler, type BatchReport } from "../../src/settler/settler";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite";
import { startHardhatNode, startRpcProxy, type HardhatNode, type RpcProxy } from "../helpers/hardhatNode";

/**
 * The batch settler against a real `hardhat node` over JSON-RPC, on a real SQLite store populated
 * the way the server populates it (channel records read from the chain or kept by the watcher,
 * vouchers signed by the channel's session key and recorded with recordVoucher). Every test
 * deploys its own PaymentChannels, so no test sees another's channels.
 */

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const DELAY = 900; // MIN_WITHDRAW_DELAY, 15 minutes
const DEPOSIT = 10_000_000n; // 10 USDC
const FAST_RETRY = { attempts: 6, baseDelayMs: 10, maxDelayMs: 100 };

/** Default accounts of `hardhat node` (unlocked: eth_sendTransaction signs with them). */
const DEPLOYER: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PAYER: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const PAYEE: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

/** Claims whatever is unclaimed, at any gas price. */
const CLAIM_ALL: SettlerPolicy = { minUnclaimed: 1n, maxAgeSec: 1_000_000, maxBatchSize: 100 };

interface Channel {
  readonly id: bigint;
  /** The highest voucher recorded in the store. */
  highest: bigint;
}

interface Deployment {
  readonly contract: Address;
  readonly block: bigint;
  readonly session: PrivateKeyAccount;
}

describe("Settler (against a hardhat node over JSON-RPC, SQLite store)", function () {
  this.timeout(60_000);

  let node: HardhatNode;
  let chain: PublicClient;
  let test: TestClient;
  let usdc: Address;
  let dir: string;
  let started = 0;
  const cleanups: (() => Promise<void> | void)[] = [];

  before(async function () {
    this.timeout(90_000);
    started = Date.now();
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    chain = createPublicClient({ chain: hardhat, transport: http(node.url), pollingInterval: 50 });
    test = createTestClient({ chain: hardhat, mode: "hardhat", transport: http(node.url) });
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-settler-"));
    await send(PAYER, { address: usdc, abi: usdcAbi, functionName: "mint", args: [PAYER, 10n ** 15n] });
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await test.setAutomine(true);
  });

  after(async () => {
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
    // The whole file, node start-up included, stays well under 90 s.
    expect(Date.now() - started).to.be.below(90_000);
  });

  // ------------------------------------------------------------------ chain helpers

  const wallet = (account: Address) => createWalletClient({ account, chain: hardhat, transport: http(node.url) });

  async function send(from: Address, call: Parameters<ReturnType<typeof wallet>["writeContract"]>[0]) {
    const hash = await wallet(from).writeContract(call);
    const receipt = await chain.waitForTransactionReceipt({ hash, pollingInterval: 20 });
    expect(receipt.status).to.equal("success");
    return receipt;
  }

  const call = (from: Address, contract: Address, functionName: string, args: readonly unknown[]) =>
    send(from, { address: contract, abi: paymentChannelsAbi, functionName, args } as Parameters<
      ReturnType<typeof wallet>["writeContract"]
    >[0]);

  /** A fresh PaymentChannels, approved by the payer, with a session key for its vouchers. */
  async function deploy(): Promise<Deployment> {
    const artifact = await artifacts.readArtifact("PaymentChannels");
    const hash = await wallet(DEPLOYER).deployContract({ abi: paymentChannelsAbi, bytecode: artifact.bytecode as Hex });
    const receipt = await chain.waitForTransactionReceipt({ hash, pollingInterval: 20 });
    const contract = receipt.contractAddress!;
    await send(PAYER, { address: usdc, abi: usdcAbi, functionName: "approve", args: [contract, maxUint256] });
    return { contract, block: receipt.blockNumber, session: privateKeyToAccount(generatePrivateKey()) };
  }

  async function open(d: Deployment, delay = DELAY): Promise<bigint> {
    const receipt = await call(PAYER, d.contract, "open", [PAYEE, usdc, d.session.address, delay, DEPOSIT]);
    const [event] = parseEventLogs({ abi: paymentChannelsAbi, eventName: "ChannelOpened", logs: receipt.logs });
    return event.args.channelId;
  }

  const sign = (d: Deployment, channelId: bigint, amount: bigint, signer: PrivateKeyAccount = d.session) =>
    signer.signTypedData(
      voucherTypedData(voucherDomain(hardhat.id, d.contract), { channelId, cumulativeAmount: amount }),
    );

  const claimedOnChain = async (d: Deployment, id: bigint) =>
    (await chain.readContract({ address: d.contract, abi: paymentChannelsAbi, functionName: "getChannel", args: [id] }))
      .claimed;

  const balanceOf = (account: Address) =>
    chain.readContract({ address: usdc, abi: usdcAbi, functionName: "balanceOf", args: [account] });

  /** Every claim (ChannelClaimed, or a ChannelsClaimed record) and ClaimSkipped the contract emitted on the canonical chain. */
  async function claimEvents(d: Deployment) {
    const logs = await chain.getLogs({ address: d.contract, fromBlock: d.block, toBlock: "latest" });
    const events = parseEventLogs({ abi: paymentChannelsAbi, logs });
    return {
      claimed: events.flatMap(claimsOfEvent),
      skipped: events.flatMap((e) => (e.eventName === "ClaimSkipped" ? [e.args] : [])),
    };
  }

  /** Mines a block every `ms` until the returned function is called. */
  function startMiner(ms = 100): () => Promise<void> {
    let busy: Promise<void> = Promise.resolve();
    const timer = setInterval(() => {
      busy = busy.then(() => test.mine({ blocks: 1 })).catch(() => undefined);
    }, ms);
    const stop = async () => {
      clearInterval(timer);
      await busy;
    };
    cleanups.push(stop);
    return stop;
  }

  async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  // ------------------------------------------------------------------ store and settler helpers

  let storeCount = 0;
  /** A new SQLite file, or `file` reopened (a restart). */
  function openStore(file = path.join(dir, `settler-${++storeCount}.db`)): { store: SqliteStore; file: string } {
    const store = openSqliteStore({ path: file });
    let closed = false;
    const close = store.close.bind(store);
    store.close = async () => {
      if (closed) return;
      closed = true;
      await close();
    };
    cleanups.push(() => store.close());
    return { store, file };
  }

  /** The channel record as the server's watcher would store it (getChannel at the latest block). */
  async function storeChannel(store: SqliteStore, d: Deployment, id: bigint): Promise<void> {
    const record = await readChannel(chain, d.contract, id);
    store.upsertChannel(record!);
  }

  /** Records `amounts` as accepted vouchers of a channel, as the gate does (one per paid request). */
  async function recordVouchers(
    store: SqliteStore,
    d: Deployment,
    channel: Channel,
    amounts: readonly bigint[],
    signature?: (amount: bigint) => Promise<Hex>,
  ): Promise<void> {
    for (const amount of amounts) {
      await store.recordVoucher({
        channelId: channel.id,
        amount,
        signature: await (signature ?? ((a: bigint) => sign(d, channel.id, a)))(amount),
        charge: 1_000n,
        chargedTotal: amount,
        receipt: `receipt-${amount}`,
        acceptedAt: Date.now(),
      });
      if (amount > channel.highest) channel.highest = amount;
    }
  }

  /** `n` channels with three vouchers each, recorded and stored. */
  async function channelsWithVouchers(store: SqliteStore, d: Deployment, n: number): Promise<Channel[]> {
    const channels: Channel[] = [];
    for (let i = 0; i < n; i++) {
      const channel: Channel = { id: await open(d), highest: 0n };
      await storeChannel(store, d, channel.id);
      const base = 10_000n * BigInt(i + 1);
      await recordVouchers(store, d, channel, [base, base + 1_000n, base + 2_345n]);
      channels.push(channel);
    }
    return channels;
  }

  interface SettlerSetup {
    readonly store: SqliteStore;
    readonly contract: Address;
    readonly url?: string;
    readonly account?: PrivateKeyAccount;
    readonly policy?: SettlerPolicy;
    readonly confirmations?: number;
    readonly opStack?: boolean;
    readonly replaceAfterMs?: number;
    readonly timeoutMs?: number;
    readonly reconcileWaitMs?: number;
    readonly intervalSec?: number;
  }

  /** A settler with its own funded key (so its nonce counts exactly its transactions). */
  async function makeSettler(o: SettlerSetup) {
    const account = o.account ?? privateKeyToAccount(generatePrivateKey());
    await test.setBalance({ address: account.address, value: 10n ** 20n });
    const url = o.url ?? node.url;
    const publicClient = createChainClient({ url, chain: hardhat, timeoutMs: 500, retryCount: 0 });
    const walletClient = createWalletClient({
      account,
      chain: hardhat,
      transport: http(url, { timeout: 500, retryCount: 0 }),
    });
    const retries: string[] = [];
    const errors: string[] = [];
    const reports: BatchReport[] = [];
    const sender = new TransactionSender({
      publicClient,
      walletClient,
      account,
      chain: hardhat,
      confirmations: o.confirmations ?? 0,
      pollIntervalMs: 50,
      replaceAfterMs: o.replaceAfterMs ?? 30_000,
      timeoutMs: o.timeoutMs ?? 30_000,
      onRetry: (cause) => retries.push(cause),
    });
    const settler = new Settler({
      publicClient,
      sender,
      store: o.store,
      contract: o.contract,
      policy: o.policy ?? CLAIM_ALL,
      opStack: o.opStack ?? false,
      intervalSec: o.intervalSec ?? 3_600,
      retry: FAST_RETRY,
      reconcileWaitMs: o.reconcileWaitMs ?? 5_000,
      onBatch: (report) => reports.push(report),
      onError: (cause, error) => errors.push(`${cause}: ${String(error).split("\n")[0]}`),
    });
    cleanups.push(() => settler.stop());
    const nonce = () => chain.getTransactionCount({ address: account.address });
    return { settler, sender, account, retries, errors, reports, nonce };
  }

  /** On-chain claimed equals the store's highest voucher (each charged up to its amount here), and the store knows it. */
  async function expectAllClaimed(store: SqliteStore, d: Deployment, channels: readonly Channel[]) {
    for (const channel of channels) {
      expect(await claimedOnChain(d, channel.id), `channel ${channel.id} on-chain`).to.equal(channel.highest);
      expect(store.getLedger(channel.id)?.claimedAmount, `channel ${channel.id} in the store`).to.equal(
        channel.highest,
      );
    }
  }

  const sum = (channels: readonly Channel[]) => channels.reduce((total, c) => total + c.highest, 0n);

  // ------------------------------------------------------------------ tests

  it("claims 32 channels in one claimBatch and reports its cost", async () => {
    const d = await deploy();
    const { store } = openStore();
    const channels = await channelsWithVouchers(store, d, 32);
    const payeeBefore = await balanceOf(PAYEE);
    const s = await makeSettler({ store, contract: d.contract, policy: { ...CLAIM_ALL, maxBatchSize: 40 } });

    await s.settler.reconcile();
    const reports = await s.settler.runOnce();

    expect(reports).to.have.length(1);
    const [report] = reports;
    expect(s.reports).to.deep.equal(reports);
    expect(await s.nonce()).to.equal(1);
    const receipt = await chain.getTransactionReceipt({ hash: report.txHash });
    expect(receipt.status).to.equal("success");
    expect(report.channels).to.equal(32);
    expect(report.amountClaimed).to.equal(sum(channels));
    expect(report.gasUsed).to.equal(receipt.gasUsed);
    // Batching amortizes the 21,000 base cost and the transfer: far below a single claim (~55,000) each.
    expect(Number(report.gasUsed) / 32).to.be.within(5_000, 25_000);
    expect(report.l1FeeWei).to.equal(0n);
    expect(report.costWei).to.equal(receipt.gasUsed * receipt.effectiveGasPrice);
    expect(report.costWei > 0n).to.equal(true);
    expect(report.costPerChannelWei).to.equal(report.costWei / 32n);
    expect(report.urgent).to.equal(false);

    await expectAllClaimed(store, d, channels);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(sum(channels));
    expect(store.loadPendingClaims()).to.deep.equal([]);
    expect(s.settler.metrics).to.deep.include({
      batchesSent: 1,
      channelsClaimed: 32,
      unclaimedCount: 32,
      unclaimedAmount: sum(channels),
      failures: {},
    });
    expect(s.settler.metrics.lastGasPerChannel).to.equal(Number(report.gasUsed) / 32);

    // Nothing is left: a second pass sends nothing.
    expect(await s.settler.runOnce()).to.deep.equal([]);
    expect(await s.nonce()).to.equal(1);
    expect(s.settler.metrics.unclaimedCount).to.equal(0);
    expect(s.errors).to.deep.equal([]);
  });

  it("claims what was charged when the best voucher runs ahead, and the higher voucher once more is charged", async () => {
    const d = await deploy();
    const { store } = openStore();
    const channel: Channel = { id: await open(d), highest: 0n };
    await storeChannel(store, d, channel.id);
    // Three requests; the last one ("upto", or a block paid ahead) was charged 6,000 under its voucher.
    const charged = [
      [10_000n, 10_000n],
      [20_000n, 20_000n],
      [30_000n, 24_000n],
    ] as const;
    for (const [amount, chargedTotal] of charged) {
      await store.recordVoucher({
        channelId: channel.id,
        amount,
        signature: await sign(d, channel.id, amount),
        charge: 1_000n,
        chargedTotal,
        receipt: `receipt-${amount}`,
        acceptedAt: Date.now(),
      });
    }
    // A voucher at exactly the charged total exists: it is the one claimed, not the best.
    await store.recordVoucher({
      channelId: channel.id,
      amount: 24_000n,
      signature: await sign(d, channel.id, 24_000n),
      charge: 0n,
      chargedTotal: 24_000n,
      receipt: "receipt-24000",
      acceptedAt: Date.now(),
    });
    expect(store.getLedger(channel.id)).to.deep.include({ chargedTotal: 24_000n, highestAmount: 30_000n });
    const payeeBefore = await balanceOf(PAYEE);
    const s = await makeSettler({ store, contract: d.contract });
    await s.settler.reconcile();
    const [first] = await s.settler.runOnce();
    expect(first.amountClaimed).to.equal(24_000n);
    expect(await claimedOnChain(d, channel.id)).to.equal(24_000n);
    expect(store.getLedger(channel.id)?.claimedAmount).to.equal(24_000n);
    expect(await s.settler.runOnce()).to.deep.equal([]);

    // Pruning after the claim keeps the vouchers above it.
    expect(store.pruneVouchers([{ channelId: channel.id, upTo: 24_000n }], Date.now() + 1)).to.deep.equal([3]);
    expect(store.loadVoucherAmounts(channel.id)).to.deep.equal([30_000n]);

    // More is charged on a voucher between the claim and the best (charged 24,000 + 4,000 ≤ 30,000):
    // no voucher is at 28,000, so the least covering one, the best, is claimed.
    await store.recordVoucher({
      channelId: channel.id,
      amount: 26_000n,
      signature: await sign(d, channel.id, 26_000n),
      charge: 4_000n,
      chargedTotal: 28_000n,
      receipt: "receipt-26000",
      acceptedAt: Date.now(),
    });
    const [second] = await s.settler.runOnce();
    expect(second.amountClaimed).to.equal(6_000n);
    expect(await claimedOnChain(d, channel.id)).to.equal(30_000n);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(30_000n);
    expect(await s.settler.runOnce()).to.deep.equal([]);
    expect(s.errors).to.deep.equal([]);
  });

  it("drops stale, withdrawn and tampered items from a batch and claims all the others", async () => {
    const d = await deploy();
    const { store } = openStore();
    const valid = await channelsWithVouchers(store, d, 4);

    // Stale: the payee claimed a higher voucher directly, which the store never saw.
    const stale: Channel = { id: await open(d), highest: 0n };
    await storeChannel(store, d, stale.id);
    await recordVouchers(store, d, stale, [400_000n, 500_000n]);
    await call(PAYEE, d.contract, "claim", [stale.id, 600_000n, await sign(d, stale.id, 600_000n)]);

    // Withdrawn: the payer exited; the stored record still says open (the watcher lags).
    const withdrawn: Channel = { id: await open(d), highest: 0n };
    await storeChannel(store, d, withdrawn.id);
    await recordVouchers(store, d, withdrawn, [700_000n]);
    await call(PAYER, d.contract, "requestWithdrawal", [withdrawn.id]);
    await test.increaseTime({ seconds: DELAY + 1 });
    await call(PAYER, d.contract, "finalizeWithdrawal", [withdrawn.id]);

    // Tampered: a well-formed signature by the wrong key, and a malformed one (v = 0xff).
    const wrongKey: Channel = { id: await open(d), highest: 0n };
    await storeChannel(store, d, wrongKey.id);
    const stranger = privateKeyToAccount(generatePrivateKey());
    await recordVouchers(store, d, wrongKey, [800_000n], (a) => sign(d, wrongKey.id, a, stranger));
    const malformed: Channel = { id: await open(d), highest: 0n };
    await storeChannel(store, d, malformed.id);
    await recordVouchers(store, d, malformed, [900_000n], async () => `0x${"11".repeat(64)}ff`);

    const payeeBefore = await balanceOf(PAYEE);
    const s = await makeSettler({ store, contract: d.contract });
    const reports = await s.settler.runOnce();

    expect(reports).to.have.length(1);
    expect(reports[0].channels).to.equal(4);
    expect(reports[0].amountClaimed).to.equal(sum(valid));
    expect(s.settler.metrics.failures).to.deep.equal({ invalid_item: 4 });
    expect(s.errors.filter((e) => e.startsWith("invalid_item"))).to.have.length(4);
    await expectAllClaimed(store, d, valid);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(sum(valid));
    expect(await claimedOnChain(d, stale.id)).to.equal(600_000n);
    expect(await claimedOnChain(d, withdrawn.id)).to.equal(0n);
    expect(await claimedOnChain(d, wrongKey.id)).to.equal(0n);
    expect(await claimedOnChain(d, malformed.id)).to.equal(0n);
    // Only valid items were sent: the contract skipped nothing.
    expect((await claimEvents(d)).skipped).to.deep.equal([]);
    expect(await s.nonce()).to.equal(1);

    // A restart's reconcile learns the direct claim from the chain, so it stops being a candidate.
    await s.settler.reconcile();
    expect(store.getLedger(stale.id)?.claimedAmount).to.equal(600_000n);
    expect(s.settler.candidates().map((c) => c.channelId)).to.have.members([withdrawn.id, wrongKey.id, malformed.id]);
  });

  it("claims an exiting channel after a restart at 80% of the withdraw delay, before the payer can finalize", async () => {
    const d = await deploy();
    const first = openStore();
    // Routine claims never fire under this policy: only urgency can trigger a claim.
    const lazy: SettlerPolicy = { minUnclaimed: 10n ** 18n, maxAgeSec: 10 ** 9, maxBatchSize: 100 };
    const exiting: Channel = { id: await open(d), highest: 0n };
    const staying: Channel = { id: await open(d), highest: 0n };
    const settlerKey = privateKeyToAccount(generatePrivateKey());

    // The server's watcher stores the records; the gate records the vouchers.
    const watch = (store: SqliteStore) => {
      const watcher = new ChannelWatcher({
        client: createChainClient({ url: node.url, chain: hardhat, timeoutMs: 2_000 }),
        contract: d.contract,
        payee: PAYEE,
        chainId: hardhat.id,
        confirmations: 0,
        store,
        pollIntervalMs: 50,
        fromBlock: d.block,
      });
      cleanups.push(() => watcher.stop());
      return watcher;
    };
    const serverWatcher = watch(first.store);
    await serverWatcher.syncNow();
    await recordVouchers(first.store, d, exiting, [1_000_000n, 2_000_000n, 3_000_000n]);
    await recordVouchers(first.store, d, staying, [5_000n]);

    const before = await makeSettler({ store: first.store, contract: d.contract, account: settlerKey, policy: lazy });
    await before.settler.start();
    expect(await before.settler.runOnce()).to.deep.equal([]);
    await before.settler.stop();
    await serverWatcher.stop();
    await first.store.close();

    // The payer asks to withdraw while the settler is down, and stays down for 80% of the delay.
    const requested = await call(PAYER, d.contract, "requestWithdrawal", [exiting.id]);
    const [event] = parseEventLogs({ abi: paymentChannelsAbi, eventName: "WithdrawalRequested", logs: requested.logs });
    const readyAt = BigInt(event.args.readyAt);
    await test.increaseTime({ seconds: (DELAY * 8) / 10 });
    await test.mine({ blocks: 1 });

    // Restart: the same database, reconcile, then the watcher's alert triggers an urgent claim.
    const { store } = openStore(first.file);
    const after = await makeSettler({ store, contract: d.contract, account: settlerKey, policy: lazy });
    await after.settler.start();
    const watcher = watch(store);
    const alerts: bigint[] = [];
    watcher.on("withdrawalRequested", (record) => {
      alerts.push(record.channelId);
      after.settler.claimUrgently();
    });
    watcher.start();
    const report = await waitFor("the urgent claim", () => after.reports[0]);
    expect(alerts).to.include(exiting.id);
    expect(report).to.deep.include({ channels: 1, amountClaimed: 3_000_000n, urgent: true });
    const receipt = await chain.getTransactionReceipt({ hash: report.txHash });
    const block = await chain.getBlock({ blockNumber: receipt.blockNumber });
    expect(block.timestamp < readyAt, "claimed before the withdrawal is ready").to.equal(true);
    expect(await claimedOnChain(d, exiting.id)).to.equal(3_000_000n);
    // The other channel is not exiting and below every routine threshold: left alone.
    expect(await claimedOnChain(d, staying.id)).to.equal(0n);

    // Too early for the payer; then, after the delay, the payer gets back only what was not claimed.
    await wallet(PAYER)
      .writeContract({
        address: d.contract,
        abi: paymentChannelsAbi,
        functionName: "finalizeWithdrawal",
        args: [exiting.id],
      })
      .then(
        () => expect.fail("finalizeWithdrawal before readyAt must revert"),
        (error: Error) => expect(error.message).to.match(/WithdrawalNotReady/),
      );
    const payerBefore = await balanceOf(PAYER);
    const payeeBefore = await balanceOf(PAYEE);
    const now = (await chain.getBlock()).timestamp;
    await test.increaseTime({ seconds: Number(readyAt - now) });
    await call(PAYER, d.contract, "finalizeWithdrawal", [exiting.id]);
    expect((await balanceOf(PAYER)) - payerBefore).to.equal(DEPOSIT - 3_000_000n);
    expect(await balanceOf(PAYEE)).to.equal(payeeBefore);
    expect(await after.nonce()).to.equal(1);
  });

  it("survives timeouts, HTTP 429, a transaction dropped from the mempool and a reorg without a double claim", async () => {
    const d = await deploy();
    const { store } = openStore();
    const channels = await channelsWithVouchers(store, d, 8);
    const payeeBefore = await balanceOf(PAYEE);

    const proxy: RpcProxy = await startRpcProxy(node.url);
    cleanups.push(() => proxy.stop());
    let sends = 0;
    /** Transactions whose receipt the settler was given. */
    const receiptsServed = new Set<string>();
    /** Receipts the proxy keeps serving after a reorg, as a lagging node behind a load balancer may. */
    const staleReceipts = new Map<string, unknown>();
    proxy.setFault((c) => {
      const stale = c.method === "eth_getTransactionReceipt" && staleReceipts.get(String(c.params[0]));
      if (stale) return { status: 200, body: { jsonrpc: "2.0", id: c.id, result: stale } };
      // The first broadcast never gets an answer (the client times out and retries it).
      if (c.method === "eth_sendRawTransaction" && sends++ === 0) return "hang";
      if (c.index % 4 === 1)
        return { status: 429, body: { jsonrpc: "2.0", id: c.id, error: { code: 429, message: "rate limited" } } };
      if (c.index % 13 === 6) return "hang";
      if (c.method === "eth_getTransactionReceipt") receiptsServed.add(String(c.params[0]));
      return "pass";
    });
    const s = await makeSettler({
      store,
      contract: d.contract,
      url: proxy.url,
      confirmations: 2,
      replaceAfterMs: 600,
    });

    // 1. Dropped: mined nowhere, forgotten by the mempool; the sender re-broadcasts it.
    await test.setAutomine(false);
    const run = s.settler.runOnce();
    const dropped = await waitFor("a broadcast claim", () => store.loadPendingClaims()[0]?.txHash);
    await waitFor("the claim in the mempool", () =>
      chain.getTransaction({ hash: dropped }).then(
        () => true,
        () => undefined,
      ),
    );
    await test.dropTransaction({ hash: dropped });
    await test.setAutomine(true);
    let stopMiner = startMiner();
    const [first] = await run;
    await stopMiner();
    expect(first.txHash).to.not.equal(dropped);
    expect(first.channels).to.equal(8);
    await expectAllClaimed(store, d, channels);

    // 2. Reorg: the claim is mined and the sender has seen its receipt, then the chain reverts to
    //    before it; the receipt vanishes before its confirmations and the sender sends again.
    for (const channel of channels) await recordVouchers(store, d, channel, [channel.highest + 77_000n]);
    const snapshot = await test.snapshot();
    const run2 = s.settler.runOnce();
    const mined = await waitFor("the second claim to be mined", async () => {
      const hash = store.loadPendingClaims()[0]?.txHash;
      if (!hash) return undefined;
      return chain.getTransactionReceipt({ hash }).then(
        (r) => r.transactionHash,
        () => undefined,
      );
    });
    await waitFor("the settler to see the receipt", () => receiptsServed.has(mined));
    await new Promise((resolve) => setTimeout(resolve, 300)); // a few polls of a receipt 0 blocks deep
    const raw = (await fetch(node.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_getTransactionReceipt", params: [mined] }),
    }).then((r) => r.json())) as { result: unknown };
    await test.revert({ id: snapshot });
    // The orphaned receipt is still served: only the sender's canonical-block check rejects it
    // once the new chain is deep enough to make it look confirmed.
    staleReceipts.set(mined, raw.result);
    expect(
      await chain.getTransactionReceipt({ hash: mined }).then(
        () => "found",
        () => "gone",
      ),
    ).to.equal("gone");
    stopMiner = startMiner();
    const [second] = await run2;
    await stopMiner();
    expect(second.txHash).to.not.equal(mined);
    expect(second.channels).to.equal(8);
    expect((await chain.getTransactionReceipt({ hash: second.txHash })).status).to.equal("success");

    // No double claim, no lost voucher.
    await expectAllClaimed(store, d, channels);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(sum(channels));
    const events = await claimEvents(d);
    expect(events.skipped).to.deep.equal([]);
    expect(events.claimed).to.have.length(16);
    for (const channel of channels) {
      const amounts = events.claimed.filter((e) => e.channelId === channel.id).map((e) => e.claimed);
      expect(amounts).to.deep.equal([channel.highest - 77_000n, channel.highest]);
    }
    expect(store.loadPendingClaims()).to.deep.equal([]);
    expect(await s.nonce()).to.equal(2);
    expect(proxy.faults()).to.be.greaterThan(10);
    expect(s.retries).to.include("send");
    expect(s.settler.metrics.failures).to.deep.equal({});
  });

  it("resolves a claim left in flight by a crashed settler from its receipt after a restart", async () => {
    const d = await deploy();
    const first = openStore();
    const channels = await channelsWithVouchers(first.store, d, 5);
    const payeeBefore = await balanceOf(PAYEE);
    const settlerKey = privateKeyToAccount(generatePrivateKey());

    // The settler broadcasts its batch, then loses the node for good (as if killed).
    const proxy = await startRpcProxy(node.url);
    cleanups.push(() => proxy.stop());
    const crashed = await makeSettler({
      store: first.store,
      contract: d.contract,
      url: proxy.url,
      account: settlerKey,
      confirmations: 1,
      timeoutMs: 1_500,
    });
    await test.setAutomine(false);
    const abandoned = crashed.settler.runOnce();
    const [pending] = await waitFor("the broadcast to be recorded", () => {
      const claims = first.store.loadPendingClaims();
      return claims.length > 0 ? claims : undefined;
    });
    expect(first.store.loadPendingClaims().map((c) => c.channelId)).to.have.members(channels.map((c) => c.id));
    await waitFor("the claim in the mempool", () =>
      chain.getTransaction({ hash: pending.txHash }).then(
        () => true,
        () => undefined,
      ),
    );
    proxy.setFault(() => "drop");
    expect(await abandoned).to.deep.equal([]); // gave up: no receipt, nothing recorded as claimed
    expect(crashed.settler.metrics.failures).to.deep.equal({ send: 1 });
    for (const channel of channels) expect(first.store.getLedger(channel.id)?.claimedAmount).to.equal(0n);
    await first.store.close();

    // Mined while nobody watches; confirmed.
    await test.mine({ blocks: 3 });
    await test.setAutomine(true);

    // Restart on the same database: reconcile resolves the claim from its receipt, which leaves
    // no channel to look up with getChannel.
    const { store } = openStore(first.file);
    expect(store.loadPendingClaims()).to.have.length(5);
    const observer = await startRpcProxy(node.url);
    cleanups.push(() => observer.stop());
    const restarted = await makeSettler({
      store,
      contract: d.contract,
      url: observer.url,
      account: settlerKey,
      confirmations: 1,
    });
    await restarted.settler.reconcile();
    expect(observer.calls.filter((c) => c.method === "eth_getTransactionReceipt").map((c) => c.params[0])).to.include(
      pending.txHash,
    );
    expect(observer.calls.filter((c) => c.method === "eth_call")).to.deep.equal([]);
    expect(store.loadPendingClaims()).to.deep.equal([]);
    await expectAllClaimed(store, d, channels);
    expect(restarted.settler.candidates()).to.deep.equal([]);
    expect(await restarted.settler.runOnce()).to.deep.equal([]);

    expect(await restarted.nonce()).to.equal(1);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(sum(channels));
    const events = await claimEvents(d);
    expect(events.claimed).to.have.length(5);
    expect(events.skipped).to.deep.equal([]);
  });

  it("stop() ends the schedule, even when called while a run is in flight", async () => {
    const d = await deploy();
    const { store } = openStore();
    await channelsWithVouchers(store, d, 1);
    const proxy = await startRpcProxy(node.url);
    cleanups.push(() => proxy.stop());
    let slowed = false;
    // The first scheduled run hangs on its gas price read (the client times out after 500 ms).
    proxy.setFault((c) => (c.method === "eth_gasPrice" && !slowed ? ((slowed = true), "hang") : "pass"));
    const s = await makeSettler({
      store,
      contract: d.contract,
      url: proxy.url,
      intervalSec: 0.05,
      policy: { ...CLAIM_ALL, minUnclaimed: 10n ** 18n },
    });
    await s.settler.start();
    await waitFor("a scheduled run", () => slowed);
    await s.settler.stop();
    const runs = () => proxy.calls.filter((c) => c.method === "eth_gasPrice").length;
    const after = runs();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(runs()).to.equal(after);
    // An urgent request after stop() starts nothing either.
    s.settler.claimUrgently();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(runs()).to.equal(after);
  });

  it("adds the OP-stack L1 data fee from the GasPriceOracle predeploy to the batch cost", async () => {
    const artifact = await artifacts.readArtifact("MockGasPriceOracle");
    await test.setCode({ address: GAS_PRICE_ORACLE, bytecode: artifact.deployedBytecode as Hex });
    cleanups.push(() => test.setCode({ address: GAS_PRICE_ORACLE, bytecode: "0x" }));
    const d = await deploy();
    const { store } = openStore();
    const channels = await channelsWithVouchers(store, d, 3);
    const s = await makeSettler({ store, contract: d.contract, opStack: true });

    const [report] = await s.settler.runOnce();

    expect(s.errors).to.deep.equal([]);
    const receipt = await chain.getTransactionReceipt({ hash: report.txHash });
    // The mock charges (16 per byte + 188) × 20 gwei for the serialized transaction, which
    // carries at least the three 99-byte items.
    const perGas = 20_000_000_000n;
    expect(report.l1FeeWei % perGas).to.equal(0n);
    expect(report.l1FeeWei >= (16n * 3n * 99n + 188n) * perGas).to.equal(true);
    expect(report.l1FeeWei <= (16n * (3n * 99n + 300n) + 188n) * perGas).to.equal(true);
    expect(report.costWei).to.equal(receipt.gasUsed * receipt.effectiveGasPrice + report.l1FeeWei);
    expect(report.costPerChannelWei).to.equal(report.costWei / 3n);
    await expectAllClaimed(store, d, channels);
  });

  it("runs as `paychan settle --now` (one pass, JSON lines) and as a scheduled process claiming an exit at once", async function () {
    this.timeout(60_000);
    const d = await deploy();
    const dbFile = path.join(dir, "cli.db");
    const first = openStore(dbFile);
    const channels = await channelsWithVouchers(first.store, d, 3);
    await first.store.close();
    const payeeBefore = await balanceOf(PAYEE);
    const key = generatePrivateKey();
    await test.setBalance({ address: privateKeyToAccount(key).address, value: 10n ** 20n });
    const configFile = path.join(dir, "cli.config.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        upstream: "http://127.0.0.1:1",
        network: "localhost",
        rpcUrl: node.url,
        contract: d.contract,
        token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
        routes: { "GET /weather": "$0.001" },
        minWithdrawDelay: DELAY,
        confirmations: 0,
        pollIntervalMs: 100,
        fromBlock: Number(d.block),
        database: { path: "cli.db" },
        settler: { minUnclaimed: "$0.01", intervalSec: 300, maxBatchSize: 10 },
      }),
    );
    const env: NodeJS.ProcessEnv = { ...process.env, [SETTLER_KEY_ENV]: key, PAYCHAN_PAYEE_ADDRESS: PAYEE };
    delete env.PAYCHAN_PAYEE_PRIVATE_KEY;
    const run = (...args: string[]) => {
      const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "paychan.js"), "settle", ...args], {
        cwd: dir,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const out = { stdout: "", stderr: "" };
      child.stdout.on("data", (c: Buffer) => (out.stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out.stderr += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      cleanups.push(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      });
      const lines = () =>
        out.stdout
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      return { child, out, exited, lines };
    };

    // --now: one reconcile, one pass, one JSON line per batch, exit 0.
    const once = run("--config", configFile, "--now");
    expect(await once.exited, once.out.stderr).to.equal(0);
    const [report, ...more] = once.lines();
    expect(more).to.deep.equal([]);
    expect(report).to.deep.include({ channels: 3, amountClaimed: sum(channels).toString(), urgent: false });
    expect(BigInt(report.gasUsed as string) > 0n).to.equal(true);
    expect(BigInt(report.costPerChannelWei as string)).to.equal(BigInt(report.costWei as string) / 3n);
    const reopened = openStore(dbFile).store;
    await expectAllClaimed(reopened, d, channels);
    expect((await balanceOf(PAYEE)) - payeeBefore).to.equal(sum(channels));

    // More vouchers on one channel, below minUnclaimed: nothing to claim on schedule...
    const exiting = channels[0];
    await recordVouchers(reopened, d, exiting, [exiting.highest + 5_000n]);
    await reopened.close();
    // --now with nothing above the threshold: no batch on stdout, and a line on stderr saying why.
    const idle = run("--config", configFile, "--now");
    expect(await idle.exited, idle.out.stderr).to.equal(0);
    expect(idle.lines()).to.deep.equal([]);
    expect(idle.out.stderr).to.include(
      "paychan settle: nothing claimed: 1 channel holds $0.005 unclaimed; 1 is below settler.minUnclaimed ($0.01)",
    );

    // ...until its payer asks to withdraw: the running settler's watcher sees it and claims at once.
    const daemon = run("--config", configFile);
    await waitFor("the settler to start", () => daemon.out.stderr.includes("paychan settler starting") || undefined);
    await call(PAYER, d.contract, "requestWithdrawal", [exiting.id]);
    const urgent = await waitFor("the urgent claim", () => daemon.lines()[0]);
    expect(urgent).to.deep.include({ channels: 1, amountClaimed: "5000", urgent: true });
    expect(await claimedOnChain(d, exiting.id)).to.equal(exiting.highest);
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited, daemon.out.stderr).to.equal(0);
    expect(await chain.getTransactionCount({ address: privateKeyToAccount(key).address })).to.equal(2);
  });
});
