import { EventEmitter } from "node:events";
import {
  BlockNotFoundError,
  decodeEventLog,
  getAbiItem,
  getAddress,
  pad,
  toEventSelector,
  toHex,
  type Address,
  type Hex,
  type PublicClient,
  type RpcLog,
} from "viem";
import { signerOfChannel } from "../protocol/voucher";
import type { ChannelRecord } from "../protocol/channel";
import { paymentChannelsAbi } from "./abi";
import { claimsOfEvent } from "./events";
import { AbortedError, backoffDelay, isRetryableRpcError, withRetry, type RetryPolicy } from "./client";
import type { PriceFeedReader } from "./priceFeed";
import { readChannel } from "./readChannel";

/** What the watcher keeps durably: channel records and its resume point (the payment store fits). */
export interface WatcherStore {
  /** Inserts or replaces a channel's record. */
  upsertChannel(channel: ChannelRecord): void;
  getChannel(channelId: bigint): ChannelRecord | undefined;
  loadChannels(): ChannelRecord[];
  /** A resume point by key, e.g. the last block fully processed. */
  getCursor(key: string): bigint | undefined;
  setCursor(key: string, block: bigint): void;
}

/** Minimal structured logger; `console` fits. */
export interface WatcherLogger {
  debug?(message: string, meta?: Record<string, unknown>): void;
  info?(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
}

/** Options of {@link ChannelWatcher}. */
export interface ChannelWatcherOptions {
  /** Public client (see `createChainClient`); every call the watcher makes through it is retried. */
  readonly client: PublicClient;
  /** The PaymentChannels contract. */
  readonly contract: Address;
  /** This server's payee address: only its channels are followed. */
  readonly payee: Address;
  readonly chainId: number;
  /** Blocks below the head an event must be before it is applied (`NetworkInfo.confirmations`). */
  readonly confirmations: number;
  readonly store: WatcherStore;
  /** Delay between polls when healthy. Default 2,000 ms. */
  readonly pollIntervalMs?: number;
  /** Largest `eth_getLogs` block span. Default 2,000 (a common provider limit); halved on demand. */
  readonly maxBlockRange?: number;
  /** The contract's deploy block; the first sync starts there. Default 1 (genesis has no logs). */
  readonly fromBlock?: bigint;
  /** Where the cursor is kept. Default `watcher:<chainId>:<contract>:<payee>` (lowercase). */
  readonly cursorKey?: string;
  readonly logger?: WatcherLogger;
  /** Backoff of each RPC call inside a poll. Default `DEFAULT_RETRY_POLICY`. */
  readonly retry?: Partial<RetryPolicy>;
  /** Cap of the delay between failed polls (they back off from `pollIntervalMs`). Default 30,000 ms. */
  readonly maxFailureBackoffMs?: number;
  /** How long an id of another payee (or that does not exist) is remembered by {@link ChannelWatcher.ensureChannel}. Default 10,000 ms. */
  readonly negativeCacheTtlMs?: number;
  /** {@link ChannelWatcher.healthy} turns false when no poll succeeded for this long. Default max(30 s, 5 polls). */
  readonly staleAfterMs?: number;
  /**
   * Price feeds read on each poll (after the channel events), so the rates the server quotes
   * are at most a poll old and never read on the request path. A failed read does not fail the
   * poll: the feed keeps its last reading, which ages into staleness.
   */
  readonly priceFeeds?: readonly PriceFeedReader[];
  /** Block hashes kept in memory to find where a reorg forked. Default 64. */
  readonly hashHistory?: number;
  /** How far below the oldest remembered hash to rewind when none of them matches. Default 64 blocks. */
  readonly maxReorgDepth?: number;
}

/** Extra facts about a {@link ChannelWatcherEvents.withdrawalRequested} notification. */
export interface WithdrawalRequestInfo {
  /**
   * false: seen in the unconfirmed tip (less than `confirmations` deep), not stored, and may still
   * be reorged away; it is notified again (confirmed: true) once the event is applied.
   */
  readonly confirmed: boolean;
  /** Block of the event, or of the state read when the request was learned from `getChannel`. */
  readonly blockNumber: bigint;
  /** Transaction of the event; undefined when learned from `getChannel`. */
  readonly transactionHash?: Hex;
}

/** A detected reorg and what the watcher did about it. */
export interface ReorgInfo {
  /** The cursor before the reorg. */
  readonly fromBlock: bigint;
  /** The last block still canonical (or assumed so); processing resumes after it. */
  readonly forkBlock: bigint;
  /** Channels re-read with `getChannel` because events of theirs were rolled back. */
  readonly channelIds: readonly bigint[];
}

/** Events of {@link ChannelWatcher}. */
export type ChannelWatcherEvents = {
  /** A channel record changed and was stored. */
  channel: [record: ChannelRecord];
  /** The payer asked to withdraw: the settler should claim this channel now. */
  withdrawalRequested: [record: ChannelRecord, info: WithdrawalRequestInfo];
  /** Everything up to `block` is processed and stored. */
  synced: [block: bigint];
  reorg: [info: ReorgInfo];
  /** A poll failed (it is retried with backoff); a warning, the watcher keeps running. */
  error: [error: Error];
};

/** A point-in-time view of the watcher's progress, for health endpoints. */
export interface WatcherStatus {
  readonly running: boolean;
  readonly healthy: boolean;
  readonly lastSyncedBlock: bigint;
  readonly latestBlock?: bigint;
  readonly safeHead?: bigint;
  readonly lagBlocks?: number;
  readonly consecutiveFailures: number;
  /** Unix ms of the last successful poll. */
  readonly lastSuccessAt?: number;
  readonly lastError?: string;
}

/** The events the watcher applies, decoded. */
type WatchedEvent =
  | {
      readonly name: "ChannelOpened";
      readonly channelId: bigint;
      readonly payer: Address;
      readonly payee: Address;
      readonly token: Address;
      readonly deposit: bigint;
      readonly withdrawDelay: number;
    }
  | { readonly name: "ChannelToppedUp"; readonly channelId: bigint; readonly deposit: bigint }
  | { readonly name: "ChannelClaimed"; readonly channelId: bigint; readonly claimed: bigint }
  | { readonly name: "WithdrawalRequested"; readonly channelId: bigint; readonly readyAt: number }
  | { readonly name: "WithdrawalCancelled"; readonly channelId: bigint }
  | { readonly name: "ChannelClosed"; readonly channelId: bigint; readonly claimed: bigint };

interface ChainLog {
  readonly blockNumber: bigint;
  readonly blockHash: Hex;
  readonly logIndex: number;
  readonly transactionHash: Hex;
  readonly event: WatchedEvent;
}

const selector = (name: WatchedEvent["name"] | "ChannelsClaimed"): Hex =>
  toEventSelector(getAbiItem({ abi: paymentChannelsAbi, name }) as Parameters<typeof toEventSelector>[0]);

const OPENED = selector("ChannelOpened");
const WITHDRAWAL_REQUESTED = selector("WithdrawalRequested");
/** Events matched to known channels by id after fetching (a batch's ChannelsClaimed names many). */
const CHANNEL_EVENTS: Hex[] = [
  selector("ChannelToppedUp"),
  selector("ChannelClaimed"),
  selector("ChannelsClaimed"),
  WITHDRAWAL_REQUESTED,
  selector("WithdrawalCancelled"),
  selector("ChannelClosed"),
];

/** Block hashes are compared and persisted by their low 48 bits: a number every store keeps exactly. */
const HASH_MASK = (1n << 48n) - 1n;
const shortHash = (hash: Hex): bigint => BigInt(hash) & HASH_MASK;

/** Messages providers use when an eth_getLogs span or result set is too large. */
const RANGE_ERROR =
  /block range|blocks? range|range (is )?too (large|wide|big)|exceed(s|ed)? .*range|range .*exceed|more than \d+ (results|logs)|too many (results|logs|blocks)|response size|query timeout|result set too large/i;

/** Whether an eth_getLogs error means "ask for a smaller span" rather than "try again later". */
export function isRangeTooLargeError(error: unknown): boolean {
  return error instanceof Error && RANGE_ERROR.test(error.message);
}

const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
const sameAddress = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/** A reorg raced a range fetch; the next poll's cursor check sorts it out. */
class InconsistentRangeError extends Error {
  constructor(block: bigint) {
    super(`logs of block ${block} do not match its header: the chain reorganized during the fetch`);
    this.name = "InconsistentRangeError";
  }
}

/**
 * Follows the PaymentChannels contract and keeps this payee's {@link ChannelRecord}s in the store,
 * so that the verification server never calls RPC on the request path.
 *
 * - Polls with `eth_getLogs` (no filters: works on any RPC, survives node restarts) in spans of
 *   at most `maxBlockRange`, up to the safe head `latest - confirmations`, and applies events in
 *   (block, logIndex) order. ChannelOpened is fetched by the indexed payee topic; the other
 *   channel events by signature, then matched to known channels by id.
 * - After each span it stores the changed records, then the cursor (last processed block) and
 *   the low 48 bits of that block's hash, so a restart resumes where it stopped.
 * - Each poll first checks that the cursor block's hash is still canonical; if not, it walks back
 *   through the remembered hashes to the fork, re-reads every channel touched after the fork
 *   with `getChannel`, and rewinds the cursor (see {@link ChannelWatcher.syncNow}).
 * - Every RPC call is retried with exponential backoff and jitter; a failed poll emits "error",
 *   backs off and tries again: the loop never dies.
 *
 * Replaying events is idempotent: an event older than a record's `updatedAtBlock` is ignored, and
 * the events of one block are always applied together. Records read with `getChannel` (reorgs,
 * {@link ChannelWatcher.ensureChannel}) therefore merge with the event stream, and a crash between
 * storing records and storing the cursor only causes a harmless replay.
 */
export class ChannelWatcher extends EventEmitter<ChannelWatcherEvents> {
  /** The store key of the cursor; the block hash is kept under `${cursorKey}:hash`. */
  readonly cursorKey: string;

  private readonly client: PublicClient;
  private readonly contract: Address;
  private readonly payee: Address;
  private readonly confirmations: bigint;
  private readonly store: WatcherStore;
  private readonly pollIntervalMs: number;
  private readonly priceFeeds: readonly PriceFeedReader[];
  private readonly maxBlockRange: number;
  private readonly fromBlock: bigint;
  private readonly logger?: WatcherLogger;
  private readonly retry: Partial<RetryPolicy>;
  private readonly maxFailureBackoffMs: number;
  private readonly negativeCacheTtlMs: number;
  private readonly staleAfterMs: number;
  private readonly hashHistory: number;
  private readonly maxReorgDepth: bigint;
  private readonly payeeTopic: Hex;

  /** Last fully processed block. */
  private cursor: bigint;
  /** block → short hash of processed blocks, ascending, at most `hashHistory` entries. */
  private readonly hashes = new Map<bigint, bigint>();
  /** Ids of this payee's channels present in the store. */
  private readonly known = new Set<bigint>();
  private range: number;
  private rangeSuccesses = 0;

  private running = false;
  private loopGeneration = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Serializes polls: timer-driven and {@link syncNow} ones never overlap. */
  private queue: Promise<void> = Promise.resolve();
  private abort = new AbortController();

  private latestBlock: bigint | undefined;
  private safeHead: bigint | undefined;
  private consecutiveFailures = 0;
  private lastSuccessAt: number | undefined;
  private lastError: Error | undefined;

  private readonly inflight = new Map<bigint, Promise<ChannelRecord | undefined>>();
  /** id → unix ms until which {@link ensureChannel} answers undefined without RPC. */
  private readonly negative = new Map<bigint, { readonly until: number; readonly foreign?: ChannelRecord }>();
  /** Unconfirmed WithdrawalRequested logs already notified ("blockHash:logIndex" → block). */
  private readonly tipNotified = new Map<string, bigint>();

  constructor(options: ChannelWatcherOptions) {
    super();
    this.client = options.client;
    this.contract = getAddress(options.contract);
    this.payee = getAddress(options.payee);
    this.confirmations = BigInt(Math.max(0, options.confirmations));
    this.store = options.store;
    this.pollIntervalMs = options.pollIntervalMs ?? 2_000;
    this.maxBlockRange = Math.max(1, options.maxBlockRange ?? 2_000);
    this.fromBlock = maxBig(1n, options.fromBlock ?? 1n);
    this.logger = options.logger;
    this.retry = options.retry ?? {};
    this.maxFailureBackoffMs = options.maxFailureBackoffMs ?? 30_000;
    this.negativeCacheTtlMs = options.negativeCacheTtlMs ?? 10_000;
    this.staleAfterMs = options.staleAfterMs ?? Math.max(30_000, 5 * this.pollIntervalMs);
    this.hashHistory = Math.max(1, options.hashHistory ?? 64);
    this.priceFeeds = options.priceFeeds ?? [];
    this.maxReorgDepth = BigInt(options.maxReorgDepth ?? 64);
    this.range = this.maxBlockRange;
    this.payeeTopic = pad(this.payee.toLowerCase() as Hex);
    this.cursorKey =
      options.cursorKey ?? `watcher:${options.chainId}:${this.contract.toLowerCase()}:${this.payee.toLowerCase()}`;

    const stored = this.store.getCursor(this.cursorKey);
    this.cursor = maxBig(stored ?? 0n, this.fromBlock - 1n);
    const storedHash = this.store.getCursor(`${this.cursorKey}:hash`);
    // The persisted hash belongs to the persisted cursor only; a cursor moved up by a newer
    // fromBlock has no known hash, and the first range records one.
    if (stored !== undefined && stored === this.cursor && storedHash !== undefined) {
      this.hashes.set(this.cursor, storedHash);
    }
    for (const record of this.store.loadChannels()) {
      if (sameAddress(record.payee, this.payee)) this.known.add(record.channelId);
    }
  }

  /** Last block whose events are all applied and stored. */
  get lastSyncedBlock(): bigint {
    return this.cursor;
  }

  /** How far the cursor is behind the safe head (0 when caught up); undefined before the first poll. */
  get lagBlocks(): number | undefined {
    return this.safeHead === undefined ? undefined : Number(maxBig(0n, this.safeHead - this.cursor));
  }

  /** Whether the last poll succeeded, recently enough for the stored state to be trusted as current. */
  get healthy(): boolean {
    return (
      this.consecutiveFailures === 0 &&
      this.lastSuccessAt !== undefined &&
      Date.now() - this.lastSuccessAt <= this.staleAfterMs
    );
  }

  /** A snapshot for health reporting. */
  status(): WatcherStatus {
    return {
      running: this.running,
      healthy: this.healthy,
      lastSyncedBlock: this.cursor,
      latestBlock: this.latestBlock,
      safeHead: this.safeHead,
      lagBlocks: this.lagBlocks,
      consecutiveFailures: this.consecutiveFailures,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError?.message,
    };
  }

  /** Starts polling in the background (first poll at once). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    const generation = ++this.loopGeneration;
    this.schedule(0, generation);
  }

  /**
   * Stops polling and waits until the poll in progress (if any) has finished; waits between
   * retries are cut short, an RPC call in flight is bounded by the transport's timeout. Nothing
   * half-processed is stored. The watcher can be started again afterwards.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.loopGeneration++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.queue;
    this.abort = new AbortController();
  }

  /**
   * Runs one poll now (after any poll in progress): reorg check, catch-up to the safe head, scan
   * of the unconfirmed tip. Rejects if it fails (after "error" was emitted), or with
   * {@link AbortedError} when {@link stop} interrupts it; the background loop uses the same path
   * and never throws.
   */
  syncNow(): Promise<void> {
    const run = this.queue.then(() => this.runPoll());
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The record of a channel a voucher names, fetching it once with `getChannel` when it is not
   * known yet (for example a channel opened before `fromBlock`, or not yet reached by the
   * catch-up). Concurrent calls for one id share a single fetch. A channel of this payee is
   * stored and followed from then on. A channel of another payee resolves with its record, so
   * the caller can say so (`wrong_payee`), but is neither stored nor followed; ids that do not
   * exist resolve undefined. Both answers are remembered for `negativeCacheTtlMs`.
   *
   * The state is read at the safe head (or at the cursor when that is higher), so it is exactly
   * as confirmed as the event stream. Rejects when RPC keeps failing; failures are not cached.
   */
  ensureChannel(channelId: bigint): Promise<ChannelRecord | undefined> {
    if (this.known.has(channelId)) {
      const record = this.store.getChannel(channelId);
      if (record) return Promise.resolve(record);
    }
    const remembered = this.negative.get(channelId);
    if (remembered !== undefined) {
      if (remembered.until > Date.now()) return Promise.resolve(remembered.foreign);
      this.negative.delete(channelId);
    }
    let pending = this.inflight.get(channelId);
    if (!pending) {
      pending = this.fetchChannel(channelId).finally(() => this.inflight.delete(channelId));
      this.inflight.set(channelId, pending);
    }
    return pending;
  }

  // ------------------------------------------------------------------ loop

  private schedule(delayMs: number, generation: number): void {
    this.timer = setTimeout(() => void this.tick(generation), delayMs);
  }

  private async tick(generation: number): Promise<void> {
    this.timer = undefined;
    try {
      await this.syncNow();
    } catch {
      // Already reported by runPoll; the loop carries on.
    }
    if (!this.running || generation !== this.loopGeneration) return;
    const delay =
      this.consecutiveFailures === 0
        ? this.pollIntervalMs
        : backoffDelay(this.consecutiveFailures - 1, {
            attempts: Infinity,
            baseDelayMs: this.pollIntervalMs,
            maxDelayMs: this.maxFailureBackoffMs,
          });
    this.schedule(delay, generation);
  }

  private async runPoll(): Promise<void> {
    try {
      await this.poll();
      this.consecutiveFailures = 0;
      this.lastSuccessAt = Date.now();
      this.lastError = undefined;
    } catch (error) {
      // A stop() in the middle of a poll is not a failure.
      if (error instanceof AbortedError) throw error;
      const err = error instanceof Error ? error : new Error(String(error));
      this.consecutiveFailures++;
      this.lastError = err;
      this.report(err);
      throw err;
    }
  }

  private async poll(): Promise<void> {
    const latest = await this.rpc(() => this.client.getBlockNumber({ cacheTime: 0 }));
    const safe = latest - this.confirmations;
    this.latestBlock = latest;
    this.safeHead = safe;
    await this.verifyCursor(safe);
    // The tip first: a withdrawal request must reach the settler even while a long catch-up runs.
    if (latest > safe && latest > this.cursor) await this.scanTip(maxBig(safe, this.cursor) + 1n, latest);
    while (this.cursor < safe) {
      if (this.abort.signal.aborted) throw new AbortedError();
      const from = this.cursor + 1n;
      const to = minBig(safe, this.cursor + BigInt(this.range));
      await this.processRange(from, to);
    }
    await Promise.all(this.priceFeeds.map((feed) => feed.refresh()));
  }

  // ------------------------------------------------------------------ ranges

  /** Fetches [from, to], then applies and stores it synchronously (no await between the two). */
  private async processRange(from: bigint, to: bigint): Promise<void> {
    const toHash = await this.blockHash(to);
    // The header is fetched before the logs: if a reorg lands in between, the stored hash is the
    // old one and the next poll's check catches it.
    if (toHash === undefined) throw new Error(`block ${to} not found (lagging RPC node?)`);
    let logs: ChainLog[];
    try {
      const [opened, others] = await Promise.all([
        this.getLogs(from, to, [OPENED, null, null, this.payeeTopic]),
        this.getLogs(from, to, [CHANNEL_EVENTS]),
      ]);
      logs = [...opened, ...others];
    } catch (error) {
      if (!isRangeTooLargeError(error) || to === from) throw error;
      this.range = Math.max(1, Math.floor(Number(to - from + 1n) / 2));
      this.rangeSuccesses = 0;
      this.logger?.debug?.("eth_getLogs span too large; halving", { from, to, range: this.range });
      return;
    }
    if (this.range < this.maxBlockRange && ++this.rangeSuccesses >= 10) {
      this.range = Math.min(this.maxBlockRange, this.range * 2);
      this.rangeSuccesses = 0;
    }
    for (const log of logs) {
      if (log.blockNumber === to && shortHash(log.blockHash) !== toHash) throw new InconsistentRangeError(to);
    }
    logs.sort((a, b) =>
      a.blockNumber === b.blockNumber ? a.logIndex - b.logIndex : a.blockNumber < b.blockNumber ? -1 : 1,
    );

    // ---- synchronous from here: nothing else (ensureChannel, a reorg rewind) interleaves.
    const changed = new Map<bigint, ChannelRecord>();
    const withdrawals: [ChannelRecord, WithdrawalRequestInfo][] = [];
    for (const log of logs) this.apply(log, changed, withdrawals);
    for (const record of changed.values()) this.store.upsertChannel(record);
    for (const log of logs) this.rememberHash(log.blockNumber, shortHash(log.blockHash));
    this.rememberHash(to, toHash);
    this.persistCursor(to, toHash);
    for (const key of this.tipNotified.keys()) {
      if ((this.tipNotified.get(key) ?? 0n) <= to) this.tipNotified.delete(key);
    }
    for (const record of changed.values()) this.safeEmit("channel", record);
    for (const [record, info] of withdrawals) this.safeEmit("withdrawalRequested", record, info);
    this.safeEmit("synced", to);
  }

  private apply(
    log: ChainLog,
    changed: Map<bigint, ChannelRecord>,
    withdrawals: [ChannelRecord, WithdrawalRequestInfo][],
  ): void {
    const event = log.event;
    const id = event.channelId;
    const current = changed.get(id) ?? (this.known.has(id) ? this.store.getChannel(id) : undefined);
    // Older than the record: already included (the record came from getChannel at a later block,
    // or this is a replay). Events of the record's own block are applied again, all of them in
    // order, which reproduces the same end state.
    if (current && log.blockNumber < current.updatedAtBlock) return;
    const block = log.blockNumber;
    let next: ChannelRecord;
    switch (event.name) {
      case "ChannelOpened":
        if (!sameAddress(event.payee, this.payee)) return;
        next = {
          channelId: id,
          payer: event.payer,
          payee: this.payee,
          token: event.token,
          signer: getAddress(signerOfChannel(id)),
          deposit: event.deposit,
          claimedOnChain: 0n,
          withdrawDelay: event.withdrawDelay,
          withdrawReadyAt: 0,
          status: "open",
          openedAtBlock: block,
          updatedAtBlock: block,
        };
        this.known.add(id);
        // ensureChannel answers known ids from the store before consulting the negative cache;
        // dropping the entry only frees it early.
        this.negative.delete(id);
        break;
      case "ChannelToppedUp":
        if (!current) return;
        next = { ...current, deposit: event.deposit, updatedAtBlock: block };
        break;
      case "ChannelClaimed":
        if (!current) return;
        next = { ...current, claimedOnChain: event.claimed, updatedAtBlock: block };
        break;
      case "WithdrawalRequested":
        if (!current) return;
        next = { ...current, withdrawReadyAt: event.readyAt, updatedAtBlock: block };
        withdrawals.push([next, { confirmed: true, blockNumber: block, transactionHash: log.transactionHash }]);
        break;
      case "WithdrawalCancelled":
        if (!current) return;
        next = { ...current, withdrawReadyAt: 0, updatedAtBlock: block };
        break;
      case "ChannelClosed":
        if (!current) return;
        // withdrawReadyAt stays as it was, as getChannel reports it after a close.
        next = { ...current, claimedOnChain: event.claimed, status: "closed", updatedAtBlock: block };
        break;
    }
    changed.set(id, next);
  }

  /** Notifies WithdrawalRequested of known channels in the unconfirmed tip, once each, without storing. */
  private async scanTip(from: bigint, to: bigint): Promise<void> {
    if (this.known.size === 0) return;
    const logs = await this.getLogs(from, to, [WITHDRAWAL_REQUESTED]);
    for (const log of logs) {
      if (log.event.name !== "WithdrawalRequested" || !this.known.has(log.event.channelId)) continue;
      const key = `${log.blockHash}:${log.logIndex}`;
      if (this.tipNotified.has(key)) continue;
      const record = this.store.getChannel(log.event.channelId);
      if (!record || record.status !== "open") continue;
      this.tipNotified.set(key, log.blockNumber);
      this.safeEmit(
        "withdrawalRequested",
        { ...record, withdrawReadyAt: log.event.readyAt },
        { confirmed: false, blockNumber: log.blockNumber, transactionHash: log.transactionHash },
      );
    }
  }

  // ------------------------------------------------------------------ reorgs

  /** Checks the cursor block is still canonical; on a mismatch, finds the fork and rewinds to it. */
  private async verifyCursor(safe: bigint): Promise<void> {
    const expected = this.hashes.get(this.cursor);
    if (expected === undefined) return;
    const actual = await this.blockHash(this.cursor);
    if (actual === expected) return;
    const fork = await this.findFork();
    await this.rewind(fork, safe);
  }

  /** The newest remembered block whose hash is still canonical, or a conservative guess below them. */
  private async findFork(): Promise<bigint> {
    const candidates = [...this.hashes.keys()].filter((b) => b < this.cursor).sort((a, b) => (a < b ? 1 : -1));
    for (const block of candidates) {
      if ((await this.blockHash(block)) === this.hashes.get(block)) return block;
    }
    const oldest = candidates.at(-1) ?? this.cursor;
    return maxBig(this.fromBlock - 1n, oldest - this.maxReorgDepth);
  }

  /**
   * Undoes everything after `fork`: channels whose record changed after it are re-read with
   * getChannel (at the safe head, so their state is confirmed, and events before that block are
   * then skipped for them), channels that no longer exist are tombstoned, and the cursor moves
   * back to `fork` so the new chain's events are applied from there.
   */
  private async rewind(fork: bigint, safe: bigint): Promise<void> {
    const from = this.cursor;
    const readAt = maxBig(safe, fork);
    const affected = this.store.loadChannels().filter((r) => this.known.has(r.channelId) && r.updatedAtBlock > fork);
    this.logger?.warn("chain reorganization detected; rewinding", {
      from,
      fork,
      channels: affected.length,
    });
    const fresh = new Map<bigint, ChannelRecord | undefined>();
    for (const old of affected) {
      fresh.set(
        old.channelId,
        await this.rpc(() => readChannel(this.client, this.contract, old.channelId, { blockNumber: readAt })),
      );
    }
    const forkHash = this.hashes.get(fork) ?? (fork >= 0n ? await this.blockHash(fork) : undefined);

    // ---- synchronous from here.
    const changed: ChannelRecord[] = [];
    const withdrawals: [ChannelRecord, WithdrawalRequestInfo][] = [];
    for (const old of affected) {
      const read = fresh.get(old.channelId);
      let next: ChannelRecord;
      if (read && sameAddress(read.payee, this.payee)) {
        next = { ...read, openedAtBlock: old.openedAtBlock <= fork ? old.openedAtBlock : read.openedAtBlock };
        if (next.status === "open" && next.withdrawReadyAt !== 0 && next.withdrawReadyAt !== old.withdrawReadyAt) {
          withdrawals.push([next, { confirmed: true, blockNumber: readAt }]);
        }
      } else {
        // Gone (or someone else's) on the new chain. The store cannot delete, so the record stays
        // as a closed, empty channel: the server refuses vouchers on it, and a ChannelOpened of
        // ours on the new chain replaces it.
        next = {
          ...old,
          deposit: 0n,
          claimedOnChain: 0n,
          withdrawReadyAt: 0,
          status: "closed",
          updatedAtBlock: readAt,
        };
        this.known.delete(old.channelId);
      }
      this.store.upsertChannel(next);
      changed.push(next);
    }
    for (const block of [...this.hashes.keys()]) if (block > fork) this.hashes.delete(block);
    this.cursor = fork;
    if (forkHash !== undefined) {
      this.hashes.set(fork, forkHash);
      this.persistCursor(fork, forkHash);
    } else {
      this.store.setCursor(this.cursorKey, fork);
    }
    // Unconfirmed requests may be re-mined in other blocks: let them be notified again.
    this.tipNotified.clear();
    this.safeEmit("reorg", { fromBlock: from, forkBlock: fork, channelIds: affected.map((r) => r.channelId) });
    for (const record of changed) this.safeEmit("channel", record);
    for (const [record, info] of withdrawals) this.safeEmit("withdrawalRequested", record, info);
  }

  // ------------------------------------------------------------------ ensureChannel

  private async fetchChannel(channelId: bigint): Promise<ChannelRecord | undefined> {
    // Re-read if the cursor passed the read block meanwhile: that range was applied while the
    // channel was unknown, so its events there were dropped.
    for (let attempt = 0; attempt < 5; attempt++) {
      const latest = await this.rpc(() => this.client.getBlockNumber({ cacheTime: 0 }));
      const readAt = maxBig(latest - this.confirmations, this.cursor);
      const record = await this.rpc(() => readChannel(this.client, this.contract, channelId, { blockNumber: readAt }));
      // ---- synchronous from here.
      if (this.known.has(channelId)) {
        const stored = this.store.getChannel(channelId);
        if (stored) return stored; // the event stream got there first
      }
      if (this.cursor > readAt) continue;
      if (!record || !sameAddress(record.payee, this.payee)) {
        const until = Date.now() + this.negativeCacheTtlMs;
        this.negative.set(channelId, record ? { until, foreign: record } : { until });
        return record;
      }
      this.store.upsertChannel(record);
      this.known.add(channelId);
      this.safeEmit("channel", record);
      if (record.status === "open" && record.withdrawReadyAt !== 0) {
        this.safeEmit("withdrawalRequested", record, { confirmed: true, blockNumber: readAt });
      }
      return record;
    }
    throw new Error(`channel 0x${channelId.toString(16)}: the cursor kept moving past the read block`);
  }

  // ------------------------------------------------------------------ RPC helpers

  private rpc<T>(fn: () => Promise<T>, isRetryable: (error: unknown) => boolean = isRetryableRpcError): Promise<T> {
    return withRetry(fn, {
      ...this.retry,
      signal: this.abort.signal,
      isRetryable,
      onRetry: (error, attempt, delayMs) =>
        this.logger?.debug?.("RPC call failed; retrying", {
          attempt,
          delayMs,
          error: error instanceof Error ? error.message.split("\n")[0] : String(error),
        }),
    });
  }

  /** Short hash of a block, or undefined when the node does not have it (e.g. after a reorg shortened the chain). */
  private async blockHash(blockNumber: bigint): Promise<bigint | undefined> {
    try {
      const block = await this.rpc(
        () => this.client.getBlock({ blockNumber, includeTransactions: false }),
        (e) => !(e instanceof BlockNotFoundError) && isRetryableRpcError(e),
      );
      return block.hash ? shortHash(block.hash) : undefined;
    } catch (error) {
      if (error instanceof BlockNotFoundError) return undefined;
      throw error;
    }
  }

  private async getLogs(from: bigint, to: bigint, topics: (Hex | Hex[] | null)[]): Promise<ChainLog[]> {
    const raw = await this.rpc(
      () =>
        this.client.request({
          method: "eth_getLogs",
          params: [{ address: this.contract, fromBlock: toHex(from), toBlock: toHex(to), topics }],
        }),
      // A span that is too large fails the same way every time: let the caller split it.
      (e) => !isRangeTooLargeError(e) && isRetryableRpcError(e),
    );
    const logs: ChainLog[] = [];
    for (const log of raw) logs.push(...decodeLog(log));
    return logs;
  }

  // ------------------------------------------------------------------ bookkeeping

  private rememberHash(block: bigint, hash: bigint): void {
    this.hashes.delete(block); // re-insert to keep insertion order ascending
    this.hashes.set(block, hash);
    while (this.hashes.size > this.hashHistory) {
      const oldest = this.hashes.keys().next().value as bigint;
      this.hashes.delete(oldest);
    }
  }

  private persistCursor(block: bigint, hash: bigint): void {
    this.cursor = block;
    // Hash first: a crash between the two writes leaves a cursor whose hash does not match,
    // which only causes a spurious (harmless) rewind at the next start.
    this.store.setCursor(`${this.cursorKey}:hash`, hash);
    this.store.setCursor(this.cursorKey, block);
  }

  private report(error: Error): void {
    this.logger?.warn("chain watcher poll failed; will retry", { error: error.message.split("\n")[0] });
    // EventEmitter throws an "error" nobody listens to; the watcher must not die of it.
    if (this.listenerCount("error") > 0) this.safeEmit("error", error);
    else if (!this.logger) console.warn(`chain watcher: ${error.message.split("\n")[0]}`);
  }

  private safeEmit<K extends keyof ChannelWatcherEvents>(event: K, ...args: ChannelWatcherEvents[K]): void {
    try {
      (this.emit as (event: K, ...args: ChannelWatcherEvents[K]) => boolean)(event, ...args);
    } catch (error) {
      this.logger?.warn("a watcher listener threw", { event, error: String(error) });
    }
  }
}

/**
 * Decodes one raw log of the contract into {@link ChainLog}s: none for events the watcher ignores,
 * one per channel for a batch's ChannelsClaimed (they share the log's index), else one.
 */
function decodeLog(log: RpcLog): ChainLog[] {
  if (log.removed || log.blockNumber === null || log.blockHash === null || log.logIndex === null) return [];
  if (log.transactionHash === null || log.topics.length === 0) return [];
  const decoded = decodeEventLog({
    abi: paymentChannelsAbi,
    data: log.data,
    topics: log.topics as [Hex, ...Hex[]],
    strict: true,
  });
  const at = {
    blockNumber: BigInt(log.blockNumber),
    blockHash: log.blockHash,
    logIndex: Number(log.logIndex),
    transactionHash: log.transactionHash,
  };
  let event: WatchedEvent;
  switch (decoded.eventName) {
    case "ChannelClaimed":
    case "ChannelsClaimed":
      return claimsOfEvent(decoded).map(({ channelId, claimed }) => ({
        ...at,
        event: { name: "ChannelClaimed", channelId, claimed },
      }));
    case "ChannelOpened":
      event = { name: decoded.eventName, ...decoded.args };
      break;
    case "ChannelToppedUp":
      event = { name: decoded.eventName, channelId: decoded.args.channelId, deposit: decoded.args.deposit };
      break;
    case "WithdrawalRequested":
      event = { name: decoded.eventName, channelId: decoded.args.channelId, readyAt: decoded.args.readyAt };
      break;
    case "WithdrawalCancelled":
      event = { name: decoded.eventName, channelId: decoded.args.channelId };
      break;
    case "ChannelClosed":
      event = { name: decoded.eventName, channelId: decoded.args.channelId, claimed: decoded.args.claimed };
      break;
    default:
      return [];
  }
  return [{ ...at, event }];
}

/** Re-exported so callers can tell an abort from a failure. */
export { AbortedError };
