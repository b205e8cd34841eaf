import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { artifacts } from "hardhat";
import {
  concatHex,
  createPublicClient,
  createTestClient,
  createWalletClient,
  http,
  maxUint256,
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
import {
  ChannelWatcher,
  type ChannelWatcherOptions,
  type ReorgInfo,
  type WatcherStore,
  type WithdrawalRequestInfo,
} from "../../src/chain/watcher";
import { encodeClaimItem, voucherDomain, voucherTypedData } from "../../src/protocol/voucher";
import { openSqliteStore } from "../../src/store/sqlite";
import type { ChannelRecord } from "../../src/protocol/channel";
import {
  jsonRpcError,
  startHardhatNode,
  startRpcProxy,
  type HardhatNode,
  type ProxiedCall,
  type RpcProxy,
} from "../helpers/hardhatNode";

/** The PaymentStore methods the watcher uses, in memory; counts writes so tests can assert on them. */
class MemoryStore implements WatcherStore {
  readonly channels = new Map<bigint, ChannelRecord>();
  readonly cursors = new Map<string, bigint>();
  upserts = 0;
  upsertChannel(channel: ChannelRecord): void {
    this.upserts++;
    this.channels.set(channel.channelId, channel);
  }
  loadChannels(): ChannelRecord[] {
    return [...this.channels.values()];
  }
  getChannel(channelId: bigint): ChannelRecord | undefined {
    return this.channels.get(channelId);
  }
  getCursor(key: string): bigint | undefined {
    return this.cursors.get(key);
  }
  setCursor(key: string, block: bigint): void {
    this.cursors.set(key, block);
  }
}

const DELAY = 900; // MIN_WITHDRAW_DELAY
const FAST_RETRY = { attempts: 4, baseDelayMs: 10, maxDelayMs: 50 };

/** Default accounts of `hardhat node` (unlocked: eth_sendTransaction signs with them). */
const DEPLOYER: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const PAYER: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const PAYEE: Address = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const OTHER_PAYEE: Address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

describe("ChannelWatcher (against a hardhat node over JSON-RPC)", function () {
  let node: HardhatNode;
  let chain: PublicClient;
  let test: TestClient;
  let usdc: Address;
  const proxies: RpcProxy[] = [];
  const watchers: ChannelWatcher[] = [];

  before(async function () {
    this.timeout(90_000);
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    chain = createPublicClient({ chain: hardhat, transport: http(node.url), pollingInterval: 50 });
    test = createTestClient({ chain: hardhat, mode: "hardhat", transport: http(node.url) });
    await send(PAYER, { address: usdc, abi: usdcAbi, functionName: "mint", args: [PAYER, 10n ** 15n] });
  });

  afterEach(async () => {
    await Promise.all(watchers.splice(0).map((w) => w.stop()));
    await Promise.all(proxies.splice(0).map((p) => p.stop()));
  });

  after(async () => {
    await node?.stop();
  });

  // ------------------------------------------------------------------ chain helpers

  const wallet = (account: Address) => createWalletClient({ account, chain: hardhat, transport: http(node.url) });

  /** Sends a transaction from an unlocked node account; automine includes it before this resolves. */
  async function send(
    from: Address,
    call: Parameters<ReturnType<typeof wallet>["writeContract"]>[0],
  ): Promise<{ blockNumber: bigint }> {
    const hash = await wallet(from).writeContract(call);
    const receipt = await chain.getTransactionReceipt({ hash });
    expect(receipt.status).to.equal("success");
    return receipt;
  }

  /** A fresh PaymentChannels per test, so tests never see each other's channels. */
  async function deployChannels(): Promise<{ contract: Address; block: bigint }> {
    const artifact = await artifacts.readArtifact("PaymentChannels");
    const hash = await wallet(DEPLOYER).deployContract({
      abi: paymentChannelsAbi,
      bytecode: artifact.bytecode as Hex,
    });
    const receipt = await chain.getTransactionReceipt({ hash });
    await send(PAYER, {
      address: usdc,
      abi: usdcAbi,
      functionName: "approve",
      args: [receipt.contractAddress!, maxUint256],
    });
    return { contract: receipt.contractAddress!, block: receipt.blockNumber };
  }

  interface Opened {
    id: bigint;
    signer: PrivateKeyAccount;
    block: bigint;
  }

  async function open(
    contract: Address,
    payee: Address,
    deposit: bigint,
    signer: PrivateKeyAccount = privateKeyToAccount(generatePrivateKey()),
    delay = DELAY,
  ): Promise<Opened> {
    const id = await chain.readContract({
      address: contract,
      abi: paymentChannelsAbi,
      functionName: "nextChannelId",
      args: [signer.address],
    });
    const { blockNumber } = await send(PAYER, {
      address: contract,
      abi: paymentChannelsAbi,
      functionName: "open",
      args: [payee, usdc, signer.address, delay, deposit],
    });
    return { id, signer, block: blockNumber };
  }

  const sign = (contract: Address, ch: Opened, amount: bigint) =>
    ch.signer.signTypedData(
      voucherTypedData(voucherDomain(hardhat.id, contract), { channelId: ch.id, cumulativeAmount: amount }),
    );

  const call = (from: Address, contract: Address, functionName: string, args: readonly unknown[]) =>
    send(from, { address: contract, abi: paymentChannelsAbi, functionName, args } as Parameters<
      ReturnType<typeof wallet>["writeContract"]
    >[0]);

  const latest = () => chain.getBlockNumber({ cacheTime: 0 });

  function makeWatcher(
    contract: Address,
    store: WatcherStore,
    overrides: Partial<ChannelWatcherOptions> & { fromBlock: bigint },
  ): ChannelWatcher {
    const watcher = new ChannelWatcher({
      client: createChainClient({ url: node.url, retryCount: 0, timeoutMs: 2_000 }),
      contract,
      payee: PAYEE,
      chainId: hardhat.id,
      confirmations: 0,
      store,
      pollIntervalMs: 50,
      retry: FAST_RETRY,
      ...overrides,
    });
    watchers.push(watcher);
    return watcher;
  }

  /** The store's record must equal what getChannel returns now (block bookkeeping aside). */
  async function expectMatchesChain(contract: Address, record: ChannelRecord | undefined): Promise<void> {
    expect(record, "record").to.not.equal(undefined);
    const onChain = await readChannel(chain, contract, record!.channelId);
    const strip = (r: ChannelRecord) => ({ ...r, openedAtBlock: 0n, updatedAtBlock: 0n });
    expect(strip(record!)).to.deep.equal(strip(onChain!));
  }

  async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  const getLogsFromBlocks = (calls: ProxiedCall[]) =>
    calls.filter((c) => c.method === "eth_getLogs").map((c) => BigInt((c.params[0] as { fromBlock: Hex }).fromBlock));

  // ------------------------------------------------------------------ tests

  it("reflects open, top-up, claim, batch claim, withdrawal, cancel, finalize and close; ignores other payees", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block });
    const changes: ChannelRecord[] = [];
    const withdrawals: [ChannelRecord, WithdrawalRequestInfo][] = [];
    watcher.on("channel", (r) => changes.push(r));
    watcher.on("withdrawalRequested", (r, info) => withdrawals.push([r, info]));

    const a = await open(contract, PAYEE, 1_000n);
    const b = await open(contract, PAYEE, 500n);
    const c = await open(contract, OTHER_PAYEE, 700n);
    await watcher.syncNow();

    const recA = store.getChannel(a.id)!;
    expect(recA).to.deep.equal({
      channelId: a.id,
      payer: PAYER,
      payee: PAYEE,
      token: usdc,
      signer: a.signer.address,
      deposit: 1_000n,
      claimedOnChain: 0n,
      withdrawDelay: DELAY,
      withdrawReadyAt: 0,
      status: "open",
      openedAtBlock: a.block,
      updatedAtBlock: a.block,
    });
    expect(store.getChannel(b.id)?.deposit).to.equal(500n);
    expect(store.getChannel(c.id)).to.equal(undefined);
    expect(changes.map((r) => r.channelId)).to.have.members([a.id, b.id]);
    expect(watcher.lastSyncedBlock).to.equal(await latest());

    await call(PAYER, contract, "topUp", [a.id, 250n]);
    await call(PAYER, contract, "topUp", [c.id, 1n]); // another payee's: ignored
    await call(PAYEE, contract, "claim", [a.id, 100n, await sign(contract, a, 100n)]);
    // A batch claim reports its claimed channels together, packed in one ChannelsClaimed log.
    const items = concatHex([
      encodeClaimItem({ channelId: a.id, cumulativeAmount: 300n }, await sign(contract, a, 300n)),
      encodeClaimItem({ channelId: b.id, cumulativeAmount: 50n }, await sign(contract, b, 50n)),
      encodeClaimItem({ channelId: c.id, cumulativeAmount: 10n }, await sign(contract, c, 10n)),
    ]);
    const batch = await call(OTHER_PAYEE, contract, "claimBatch", [items]);
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.include({
      deposit: 1_250n,
      claimedOnChain: 300n,
      updatedAtBlock: batch.blockNumber,
    });
    expect(store.getChannel(b.id)).to.include({ claimedOnChain: 50n });
    expect(store.getChannel(c.id)).to.equal(undefined);

    const req = await call(PAYER, contract, "requestWithdrawal", [b.id]);
    await watcher.syncNow();
    const readyAt = Number((await chain.getBlock({ blockNumber: req.blockNumber })).timestamp) + DELAY;
    expect(store.getChannel(b.id)?.withdrawReadyAt).to.equal(readyAt);
    expect(withdrawals).to.have.length(1);
    expect(withdrawals[0][0]).to.include({ channelId: b.id, withdrawReadyAt: readyAt });
    expect(withdrawals[0][1]).to.include({ confirmed: true, blockNumber: req.blockNumber });

    await call(PAYER, contract, "cancelWithdrawal", [b.id]);
    await watcher.syncNow();
    expect(store.getChannel(b.id)?.withdrawReadyAt).to.equal(0);

    await call(PAYER, contract, "requestWithdrawal", [b.id]);
    await test.increaseTime({ seconds: DELAY });
    await call(PAYER, contract, "finalizeWithdrawal", [b.id]);
    await call(PAYEE, contract, "close", [a.id, 400n, await sign(contract, a, 400n)]);
    await watcher.syncNow();
    expect(store.getChannel(b.id)).to.include({ status: "closed", claimedOnChain: 50n });
    expect(store.getChannel(a.id)).to.include({ status: "closed", claimedOnChain: 400n, deposit: 1_250n });
    await expectMatchesChain(contract, store.getChannel(a.id));
    await expectMatchesChain(contract, store.getChannel(b.id));
    expect(store.getChannel(c.id)).to.equal(undefined);
    expect(withdrawals).to.have.length(2);
    expect(watcher.lagBlocks).to.equal(0);
    expect(watcher.healthy).to.equal(true);
  });

  it("applies nothing until it is `confirmations` blocks deep", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block, confirmations: 3 });

    const a = await open(contract, PAYEE, 1_000n);
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.equal(undefined);
    expect(watcher.lastSyncedBlock).to.equal((await latest()) - 3n);

    await test.mine({ blocks: 2 });
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.equal(undefined);
    expect(watcher.lastSyncedBlock).to.equal(a.block - 1n);

    await test.mine({ blocks: 1 });
    await watcher.syncNow();
    expect(store.getChannel(a.id)?.deposit).to.equal(1_000n);
    expect(watcher.lastSyncedBlock).to.equal(a.block);
  });

  it("notifies a withdrawal request at once, before it is confirmed, and again once applied", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block, confirmations: 4 });
    const seen: [ChannelRecord, WithdrawalRequestInfo][] = [];
    watcher.on("withdrawalRequested", (r, info) => seen.push([r, info]));

    const a = await open(contract, PAYEE, 1_000n);
    await test.mine({ blocks: 4 });
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.not.equal(undefined);

    const req = await call(PAYER, contract, "requestWithdrawal", [a.id]);
    await watcher.syncNow();
    expect(seen).to.have.length(1);
    const readyAt = Number((await chain.getBlock({ blockNumber: req.blockNumber })).timestamp) + DELAY;
    expect(seen[0][0]).to.include({ channelId: a.id, withdrawReadyAt: readyAt });
    expect(seen[0][1]).to.include({ confirmed: false, blockNumber: req.blockNumber });
    // Not applied yet: the stored state only moves with confirmed blocks.
    expect(store.getChannel(a.id)?.withdrawReadyAt).to.equal(0);

    await test.mine({ blocks: 1 });
    await watcher.syncNow();
    expect(seen, "notified once while unconfirmed").to.have.length(1);

    await test.mine({ blocks: 3 });
    await watcher.syncNow();
    expect(seen).to.have.length(2);
    expect(seen[1][1]).to.include({ confirmed: true, blockNumber: req.blockNumber });
    expect(store.getChannel(a.id)?.withdrawReadyAt).to.equal(readyAt);
  });

  it("resumes from the stored cursor after a restart instead of rescanning from the deploy block (SQLite store)", async () => {
    const { contract, block } = await deployChannels();
    const proxy = await startRpcProxy(node.url);
    proxies.push(proxy);
    const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-watcher-"));
    const dbPath = path.join(dir, "store.db");
    let store = openSqliteStore({ path: dbPath, durable: false });
    const options = { fromBlock: block, maxBlockRange: 3 };
    const viaProxy = { client: createChainClient({ url: proxy.url, retryCount: 0 }) };

    const a = await open(contract, PAYEE, 1_000n);
    await test.mine({ blocks: 5 });
    const first = makeWatcher(contract, store, { ...options, ...viaProxy });
    await first.syncNow();
    await first.stop();
    await store.close();
    const cursor = first.lastSyncedBlock;
    expect(cursor).to.equal(await latest());
    expect(getLogsFromBlocks(proxy.calls)).to.include(block);

    await call(PAYER, contract, "topUp", [a.id, 5n]);
    const b = await open(contract, PAYEE, 2_000n);
    proxy.reset();
    store = openSqliteStore({ path: dbPath, durable: false });
    try {
      const second = makeWatcher(contract, store, { ...options, ...viaProxy });
      expect(second.lastSyncedBlock).to.equal(cursor);
      await second.syncNow();
      await second.stop();

      const froms = getLogsFromBlocks(proxy.calls);
      // One span (two queries: opened-by-payee and the rest) covers the two new blocks.
      expect(froms).to.deep.equal([cursor + 1n, cursor + 1n]);
      expect(store.getChannel(a.id)?.deposit).to.equal(1_005n);
      expect(store.getChannel(b.id)?.deposit).to.equal(2_000n);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("survives a reorg: rolled-back events are undone and the new chain's events applied", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block });
    const reorgs: ReorgInfo[] = [];
    watcher.on("reorg", (info) => reorgs.push(info));

    const x = await open(contract, PAYEE, 1_000n);
    await watcher.syncNow();
    const forkBlock = await latest();
    const snapshot = await test.snapshot();

    // The chain the watcher sees first.
    await call(PAYER, contract, "topUp", [x.id, 100n]);
    await call(PAYEE, contract, "claim", [x.id, 50n, await sign(contract, x, 50n)]);
    const ySigner = privateKeyToAccount(generatePrivateKey());
    const y = await open(contract, PAYEE, 300n, ySigner);
    const w = await open(contract, PAYEE, 400n);
    await test.mine({ blocks: 2 });
    await watcher.syncNow();
    expect(store.getChannel(x.id)).to.include({ deposit: 1_100n, claimedOnChain: 50n });
    expect(store.getChannel(y.id)?.deposit).to.equal(300n);
    expect(store.getChannel(w.id)?.status).to.equal("open");

    // Replace it: no top-up, a different claim, the same channel id opened with other terms,
    // w never opened; and the new chain is longer.
    await test.revert({ id: snapshot });
    await call(PAYEE, contract, "claim", [x.id, 70n, await sign(contract, x, 70n)]);
    const y2 = await open(contract, PAYEE, 999n, ySigner, DELAY * 2);
    expect(y2.id).to.equal(y.id);
    const z = await open(contract, PAYEE, 123n);
    await test.mine({ blocks: 6 });
    await watcher.syncNow();

    expect(reorgs).to.have.length(1);
    expect(reorgs[0].forkBlock <= forkBlock).to.equal(true);
    expect(reorgs[0].channelIds).to.have.members([x.id, y.id, w.id]);
    expect(store.getChannel(x.id)).to.include({ deposit: 1_000n, claimedOnChain: 70n });
    expect(store.getChannel(y.id)).to.include({ deposit: 999n, withdrawDelay: DELAY * 2, status: "open" });
    expect(store.getChannel(z.id)?.deposit).to.equal(123n);
    // w does not exist any more: kept as a closed, empty record so no voucher is accepted on it.
    expect(store.getChannel(w.id)).to.include({ status: "closed", deposit: 0n });
    for (const id of [x.id, y.id, z.id]) await expectMatchesChain(contract, store.getChannel(id));
    expect(watcher.lastSyncedBlock).to.equal(await latest());

    // Later events keep applying on the new chain.
    await call(PAYER, contract, "topUp", [x.id, 1n]);
    await watcher.syncNow();
    expect(store.getChannel(x.id)?.deposit).to.equal(1_001n);
  });

  it("detects a reorg that happened while it was stopped, from the persisted cursor hash", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const x = await open(contract, PAYEE, 1_000n);
    const snapshot = await test.snapshot();
    await call(PAYER, contract, "topUp", [x.id, 100n]);
    await test.mine({ blocks: 1 });
    const first = makeWatcher(contract, store, { fromBlock: block });
    await first.syncNow();
    await first.stop();
    expect(store.getChannel(x.id)?.deposit).to.equal(1_100n);

    await test.revert({ id: snapshot });
    await call(PAYEE, contract, "claim", [x.id, 5n, await sign(contract, x, 5n)]);
    await test.mine({ blocks: 3 });
    const second = makeWatcher(contract, store, { fromBlock: block });
    const reorgs: ReorgInfo[] = [];
    second.on("reorg", (info) => reorgs.push(info));
    await second.syncNow();

    expect(reorgs).to.have.length(1);
    expect(store.getChannel(x.id)).to.include({ deposit: 1_000n, claimedOnChain: 5n });
    await expectMatchesChain(contract, store.getChannel(x.id));
  });

  it("keeps running through HTTP 429s, 5xx, dropped connections and hung requests, and ends correct", async () => {
    const { contract, block } = await deployChannels();
    const a = await open(contract, PAYEE, 1_000n);
    await call(PAYER, contract, "topUp", [a.id, 10n]);
    const faults: ("drop" | "hang" | number)[] = [429, 429, 429, "hang", "drop", 500, 503, 429, "drop", 502];
    const proxy = await startRpcProxy(node.url, (c) => {
      const f = faults[c.index];
      if (f === undefined) return "pass";
      if (typeof f === "number") return { status: f, body: { error: "injected" } };
      return f;
    });
    proxies.push(proxy);
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, {
      fromBlock: block,
      client: createChainClient({ url: proxy.url, retryCount: 0, timeoutMs: 300 }),
      retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 40 },
      maxFailureBackoffMs: 100,
    });
    const errors: Error[] = [];
    watcher.on("error", (e) => errors.push(e));
    watcher.start();

    await waitFor(() => store.getChannel(a.id)?.deposit === 1_010n, 15_000, "the top-up");
    await waitFor(() => watcher.healthy, 5_000, "healthy");
    expect(proxy.faults()).to.equal(faults.length);
    // With 3 tries per call, the 10 faults must have failed at least one poll.
    expect(errors.length).to.be.greaterThan(0);
    await call(PAYEE, contract, "claim", [a.id, 7n, await sign(contract, a, 7n)]);
    await waitFor(() => store.getChannel(a.id)?.claimedOnChain === 7n, 5_000, "the claim");
    await expectMatchesChain(contract, store.getChannel(a.id));
  });

  it("reports unhealthy during an outage, then catches up", async () => {
    const { contract, block } = await deployChannels();
    const proxy = await startRpcProxy(node.url);
    proxies.push(proxy);
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, {
      fromBlock: block,
      client: createChainClient({ url: proxy.url, retryCount: 0 }),
      retry: { attempts: 2, baseDelayMs: 5, maxDelayMs: 10 },
      maxFailureBackoffMs: 100,
    });
    const errors: Error[] = [];
    watcher.on("error", (e) => errors.push(e));
    watcher.start();
    await waitFor(() => watcher.healthy, 5_000, "first sync");

    proxy.setFault(() => ({ status: 503, body: { error: "down" } }));
    const a = await open(contract, PAYEE, 42n);
    await waitFor(() => errors.length >= 2, 5_000, "failed polls");
    expect(watcher.healthy).to.equal(false);
    expect(watcher.status()).to.include({ running: true });
    expect(watcher.status().consecutiveFailures).to.be.greaterThan(1);
    expect(store.getChannel(a.id)).to.equal(undefined);

    proxy.setFault(() => "pass");
    await waitFor(() => store.getChannel(a.id) !== undefined && watcher.healthy, 5_000, "recovery");
    expect(watcher.lagBlocks).to.equal(0);
  });

  it("halves the eth_getLogs span when the provider refuses a range", async () => {
    const { contract, block } = await deployChannels();
    const a = await open(contract, PAYEE, 1_000n);
    await test.mine({ blocks: 20 });
    await call(PAYER, contract, "topUp", [a.id, 1n]);
    const proxy = await startRpcProxy(node.url, (c) => {
      if (c.method !== "eth_getLogs") return "pass";
      const { fromBlock, toBlock } = c.params[0] as { fromBlock: Hex; toBlock: Hex };
      return BigInt(toBlock) - BigInt(fromBlock) + 1n > 4n
        ? jsonRpcError(c, -32005, "query returned more than 10000 results")
        : "pass";
    });
    proxies.push(proxy);
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, {
      fromBlock: block,
      maxBlockRange: 2_000,
      client: createChainClient({ url: proxy.url, retryCount: 0 }),
    });
    await watcher.syncNow();
    expect(store.getChannel(a.id)?.deposit).to.equal(1_001n);
    expect(watcher.lastSyncedBlock).to.equal(await latest());
  });

  it("ensureChannel fetches an unseen channel once for concurrent callers; another payee's is returned, not followed", async () => {
    const { contract } = await deployChannels();
    const a = await open(contract, PAYEE, 1_000n);
    await call(PAYER, contract, "requestWithdrawal", [a.id]);
    const other = await open(contract, OTHER_PAYEE, 1_000n);
    const proxy = await startRpcProxy(node.url);
    proxies.push(proxy);
    const store = new MemoryStore();
    // Starts after the openings, so the log scan never sees them.
    const watcher = makeWatcher(contract, store, {
      fromBlock: (await latest()) + 1n,
      client: createChainClient({ url: proxy.url, retryCount: 0 }),
    });
    const withdrawals: ChannelRecord[] = [];
    watcher.on("withdrawalRequested", (r) => withdrawals.push(r));
    await test.mine({ blocks: 1 });
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.equal(undefined);

    proxy.reset();
    const results = await Promise.all(Array.from({ length: 5 }, () => watcher.ensureChannel(a.id)));
    const ethCalls = () => proxy.calls.filter((c) => c.method === "eth_call").length;
    expect(ethCalls()).to.equal(1);
    for (const r of results) expect(r).to.deep.equal(results[0]);
    expect(store.getChannel(a.id)).to.deep.equal(results[0]);
    await expectMatchesChain(contract, results[0]);
    // A pending withdrawal learned this way still reaches the settler.
    expect(withdrawals.map((r) => r.channelId)).to.deep.equal([a.id]);

    expect(await watcher.ensureChannel(a.id)).to.deep.equal(results[0]);
    expect(ethCalls(), "known channels come from the store").to.equal(1);

    // Another payee's channel comes back (so the server can answer wrong_payee), is not stored,
    // and is remembered without a second read.
    const foreign = await Promise.all([watcher.ensureChannel(other.id), watcher.ensureChannel(other.id)]);
    expect(foreign[0]).to.deep.include({ channelId: other.id, payee: OTHER_PAYEE, status: "open" });
    expect(foreign[1]).to.deep.equal(foreign[0]);
    expect(await watcher.ensureChannel(other.id)).to.deep.equal(foreign[0]);
    expect(ethCalls(), "another payee's channel is cached").to.equal(2);
    expect(store.getChannel(other.id)).to.equal(undefined);
    expect(await watcher.ensureChannel(123n)).to.equal(undefined);

    // From now on the channel is followed by the event stream.
    await call(PAYER, contract, "cancelWithdrawal", [a.id]);
    await call(PAYER, contract, "topUp", [a.id, 9n]);
    await watcher.syncNow();
    expect(store.getChannel(a.id)).to.include({ deposit: 1_009n, withdrawReadyAt: 0 });
  });

  it("ensureChannel reads at the safe head: a channel not yet confirmed is not returned", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block, confirmations: 2, negativeCacheTtlMs: 60_000 });
    await test.mine({ blocks: 2 });
    await watcher.syncNow();
    const a = await open(contract, PAYEE, 5n);
    expect(await watcher.ensureChannel(a.id)).to.equal(undefined);
    // Once the event stream confirms it, the store answers despite the (long) negative cache entry.
    await test.mine({ blocks: 2 });
    await watcher.syncNow();
    expect((await watcher.ensureChannel(a.id))?.deposit).to.equal(5n);
  });

  it("stop() waits for the poll in progress and leaves nothing scheduled", async () => {
    const { contract, block } = await deployChannels();
    const store = new MemoryStore();
    const watcher = makeWatcher(contract, store, { fromBlock: block });
    let synced = 0;
    watcher.on("synced", () => synced++);
    watcher.start();
    await waitFor(() => synced > 0, 5_000, "first sync");
    await watcher.stop();
    expect(watcher.status().running).to.equal(false);
    const before = synced;
    await open(contract, PAYEE, 1n);
    await new Promise((r) => setTimeout(r, 300));
    expect(synced).to.equal(before);
  });
});
