import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { Address, Hex } from "viem";
import { DuplicateVoucherError, VoucherNotFoundError } from "./errors";
import { migrate } from "./migrations";
import {
  authorizationKey,
  rowReaders,
  type AuthorizationRow,
  type ChannelRow,
  type LedgerRow,
  type PendingClaimRow,
  type VoucherRow,
} from "./rows";
import type { ChannelRecord } from "../protocol/channel";
import type {
  AcceptedVoucher,
  AuthorizationStore,
  ChannelLedger,
  ExactAuthorization,
  PaymentStore,
  PendingClaim,
} from "./types";

export { DuplicateVoucherError, VoucherNotFoundError };

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** Database file; created (with its schema) if missing. */
  readonly path: string;
  /**
   * true (default): a resolved {@link PaymentStore.recordVoucher} survives power loss: the WAL is
   * fsynced after the commit and before the promise resolves (see {@link fsync}). false:
   * `synchronous = OFF`, no fsync at all; survives a process crash but not an OS crash. Only for
   * benchmarks and tests.
   */
  readonly durable?: boolean;
  /**
   * Where a durable store fsyncs a group commit.
   * - "background" (default): the connection runs `synchronous = NORMAL` (in WAL mode: no fsync
   *   at COMMIT, and every checkpoint fsyncs the WAL before and the database file after, so the
   *   file stays consistent), and the store itself `fdatasync`s the WAL file on libuv's thread
   *   pool after each commit, settling the batch's promises only once that returns. The event
   *   loop goes on serving while the disk syncs; commits made while one sync runs share the next.
   * - "commit": `synchronous = FULL`, SQLite fsyncs the WAL inside COMMIT, on the event loop.
   * Both acknowledge a write only after an fsync covering it has returned. The writes off the
   * request path (channels, cursors, claims, pruning) are fsynced before they return in both.
   */
  readonly fsync?: "background" | "commit";
  /** The file syncs of the "background" mode; replaceable in tests. Default `node:fs`. */
  readonly syncFile?: FileSync;
  /**
   * Called with the duration (seconds) of each WAL fsync of the "background" mode, successful or
   * not: the disk's share of a paid request's latency, for metrics.
   */
  readonly onSync?: (seconds: number) => void;
  /**
   * How long the first queued write waits for others to join its batch. 0 (default) flushes on
   * the next `setImmediate`, i.e. after every request the event loop has already read in this
   * turn, which batches well under load without adding latency when idle. Node timers have 1 ms
   * granularity, so values between 0 and 1 act as 1.
   */
  readonly maxBatchDelayMs?: number;
  /** A queue reaching this many writes is committed at once instead of waiting. Default 512. */
  readonly maxBatchSize?: number;
  /** How long a write waits for another connection's lock before failing. Default 5000 ms. */
  readonly busyTimeoutMs?: number;
  /**
   * WAL size (pages of 4 KiB) after which the committing batch also checkpoints the WAL into the
   * database file. That checkpoint runs inline and blocks the event loop while it copies the
   * pages and fsyncs the database file, so this bounds the longest pause. Default 256 (1 MiB),
   * not SQLite's 1000: a quarter of the pause for about 7% more bytes written and 20% more fsyncs
   * per voucher (counted with strace); peak throughput is far above what the server needs, the
   * tail is not. A separate checkpointing connection would avoid the pause but lets the WAL grow
   * without bound under sustained load (it is never fully checkpointed while the writer appends).
   */
  readonly walAutocheckpointPages?: number;
  /**
   * Logged writes (see {@link SqliteStore}) after which the store folds them into the vouchers
   * and ledgers at the next turn of the event loop. A fold runs inline, so this bounds its pause;
   * larger folds touch each channel's pages once for more vouchers. Default 256: timed once on the
   * 2-core dev machine (recordVoucher over 32 channels, then a read that folds), a fold of 256
   * paused the event loop 3.9 ms (p50) for 15 µs a voucher, one of 128 3.5 ms for 27 µs, one of
   * 512 12.6 ms (it also checkpoints the WAL); `npm run bench` shows folds in the event-loop delay.
   */
  readonly foldRows?: number;
  /** How long logged writes wait for a fold when fewer than {@link foldRows} arrive. Default 200 ms. */
  readonly foldDelayMs?: number;
}

/** `fdatasync` as the "background" fsync mode uses it (the subset of `node:fs`). */
export interface FileSync {
  fdatasync(fd: number, callback: (error: NodeJS.ErrnoException | null) => void): void;
  fdatasyncSync(fd: number): void;
}

/** Counters for monitoring and benchmarks. */
export interface SqliteStoreStats {
  /** Group-commit transactions run (successful or not). */
  readonly batches: number;
  /** WAL fsyncs run off the event loop ("background" mode); one may cover several batches. */
  readonly syncs: number;
  /** recordVoucher/adjustCharge calls committed through them. */
  readonly writes: number;
  /** Largest batch so far. */
  readonly maxBatchSize: number;
  /** Folds of the voucher log into the vouchers and ledgers, and the writes they moved. */
  readonly folds: number;
  readonly folded: number;
}

/**
 * The WAL fsync failed. After a failed fsync the kernel may have dropped the unsynced pages, so
 * nothing later can be promised durable: the store refuses every write from then on and the
 * process must be restarted (SQLite then recovers whatever did reach the disk).
 */
export class StoreSyncError extends Error {
  constructor(readonly cause: unknown) {
    super(`fsync of the SQLite WAL failed; the store refuses writes until restarted: ${String(cause)}`);
    this.name = "StoreSyncError";
  }
}

/** Default of {@link SqliteStoreOptions.walAutocheckpointPages}. */
export const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 256;
const MAX_U256 = (1n << 256n) - 1n;
const ZERO = "0".repeat(64);

/**
 * Encodes an unsigned bigint as 64 zero-padded hex digits: exact for any uint256, and fixed width
 * so that SQLite's text comparison agrees with numeric order (the ledger upsert takes a MAX in SQL).
 */
function u256(value: bigint): string {
  if (typeof value !== "bigint" || value < 0n || value > MAX_U256) {
    throw new RangeError(`expected a uint256 bigint, got ${String(value)}`);
  }
  return value.toString(16).padStart(64, "0");
}

function fromU256(text: string): bigint {
  return BigInt("0x" + text);
}

const { toLedger, toVoucher, toChannel, toPendingClaim, toAuthorization } = rowReaders(fromU256);

/** A queued group-commit write, already encoded (so a bad value fails its own call, not the batch). */
type QueuedWrite = {
  readonly channelId: string;
  readonly amount: string;
  readonly charge: string;
  readonly chargedTotal: string;
  readonly receipt: string;
  resolve(): void;
  reject(error: unknown): void;
} & (
  { readonly kind: "record"; readonly signature: string; readonly acceptedAt: number } | { readonly kind: "adjust" }
);

/** A row of `voucher_log` (see migration 5). */
interface LogRow extends Omit<VoucherRow, "signature" | "accepted_at"> {
  readonly id: number;
  readonly kind: 0 | 1;
  readonly signature: string | null;
  readonly accepted_at: number | null;
}

/** What one fold does to one channel's ledger row. */
interface LedgerDelta {
  /** The total of the channel's last successful write in the batch (writes are in call order). */
  chargedTotal: string;
  /** Highest voucher inserted by the batch, ZERO if none. */
  highestAmount: string;
  highestSignature: string | null;
}

/**
 * {@link PaymentStore} on one SQLite file through better-sqlite3, in WAL mode.
 *
 * Request-path writes (recordVoucher, adjustCharge) are group-committed: each call queues its
 * write and returns a promise; the queue is appended to the `voucher_log` table in ONE
 * transaction (one WAL fsync) on the
 * next `setImmediate` (or after `maxBatchDelayMs`, or at once when `maxBatchSize` is reached),
 * and every promise of the batch settles only after an fsync of the WAL that covers the commit has
 * returned. By default that fsync runs off the event loop (see {@link SqliteStoreOptions.fsync}):
 * blocking the loop for it took a fifth of the server's time under load and put every other
 * request, free ones included, behind the disk.
 *
 * The SQL of a commit runs synchronously on the event loop. Committing in a worker thread instead was
 * measured (same SQL, batches pipelined one at a time): on the 2-core dev machine it gave no more
 * throughput (±15%, usually less) and only halved event-loop delay, because the SQLite work still
 * needs a core and a hop is added to every write. Revisit on disks with slow fsync (network block
 * storage at ~1 ms), where blocking the loop per batch costs more.
 *
 * The log is folded into `vouchers` and `ledgers` (one transaction, in log order) once
 * {@link SqliteStoreOptions.foldRows} writes have been logged or {@link SqliteStoreOptions.foldDelayMs}
 * after the first, before every read of vouchers or ledgers, at close, and on open (what a crash
 * left). A group commit then writes a few pages at the end of the log whatever channels its
 * vouchers pay, and a fold writes each channel's index and ledger pages once for all its vouchers.
 * The signatures of logged, unfolded vouchers are kept in memory, to check duplicates.
 *
 * Batch semantics, per call, in call order:
 * - recordVoucher inserts the voucher and sets its channel's ledger charged_total to the
 *   voucher's chargedTotal and highest amount/signature to the max of stored and new. Recording a
 *   (channel, amount) that is already stored with the same signature is an idempotent no-op that
 *   resolves (the stored row, charge and receipt included, wins); with another signature it
 *   rejects that call alone with {@link DuplicateVoucherError}.
 * - adjustCharge rewrites the voucher's charge, chargedTotal and receipt and sets the ledger's
 *   charged_total; for a voucher neither stored nor queued before it, it rejects alone with
 *   {@link VoucherNotFoundError}.
 * - A channel's ledger charged_total after a batch is the chargedTotal of its last successful
 *   call (not a max: adjustCharge lowers it).
 * - Anything failing the transaction itself (I/O error, disk full, lock timeout) rolls it back
 *   and rejects every call of the batch with that error.
 *
 * Reads see committed state only: writes still queued are invisible to getLedger/findVoucher;
 * a committed write may be read while its fsync is still running (its promise has not settled).
 * Another process reading the same file sees logged writes once they are folded.
 * The verification engine keeps its own in-memory state and reads the store only at start-up
 * and for idempotent retries of vouchers it has already been told are durable.
 *
 * Other writes (upsertChannel, setCursor, markClaimed, pending claims) are off the request path
 * and commit synchronously, each in its own transaction.
 */
export class SqliteStore implements PaymentStore, AuthorizationStore {
  private readonly db: Database.Database;
  private readonly maxBatchDelayMs: number;
  private readonly maxBatchSize: number;
  private queue: QueuedWrite[] = [];
  private flushTimer: { immediate: NodeJS.Immediate } | { timeout: NodeJS.Timeout } | undefined;
  private closed = false;
  private counters = { batches: 0, syncs: 0, writes: 0, maxBatchSize: 0, folds: 0, folded: 0 };

  // The voucher log: signatures of the vouchers logged and not folded yet (key: channel id +
  // amount, u256 hex), how many writes the log holds, the pending fold.
  private readonly unfolded = new Map<string, string>();
  private logged = 0;
  private readonly foldRows: number;
  private readonly foldDelayMs: number;
  private foldTimer: NodeJS.Timeout | undefined;
  private foldSoon: NodeJS.Immediate | undefined;

  // "background" fsync: committed writes waiting for the next fsync, whether one is running, the
  // WAL's descriptor and the failure that stopped the store.
  private readonly background: boolean;
  private readonly syncFile: FileSync;
  private readonly onSync: ((seconds: number) => void) | undefined;
  private readonly walPath: string;
  private walFd: number | undefined;
  private unsynced: QueuedWrite[] = [];
  private syncing = false;
  private syncFailure: StoreSyncError | undefined;
  private syncDrained: (() => void)[] = [];

  private readonly stmt: {
    insertVoucher: Database.Statement<[string, string, string, string, string, string, number]>;
    logWrite: Database.Statement<[number, string, string, string | null, string, string, string, number | null]>;
    logRows: Database.Statement<[], LogRow>;
    clearLog: Database.Statement<[number]>;
    foldVouchers: Database.Statement<[]>;
    foldLedgers: Database.Statement<[]>;
    emptyLog: Database.Statement<[]>;
    logHasAdjustment: Database.Statement<[], number>;
    adjustVoucher: Database.Statement<[string, string, string, string, string]>;
    upsertLedger: Database.Statement<[string, string, string, string | null]>;
    voucherSignature: Database.Statement<[string, string], string>;
    allLedgers: Database.Statement<[], LedgerRow>;
    ledger: Database.Statement<[string], LedgerRow>;
    voucherAmounts: Database.Statement<[string, string], string>;
    pruneVouchers: Database.Statement<[string, string, number]>;
    voucher: Database.Statement<[string, string], VoucherRow>;
    coveringVoucher: Database.Statement<[string, string], VoucherRow>;
    upsertChannel: Database.Statement<ChannelRow>;
    allChannels: Database.Statement<[], ChannelRow>;
    channel: Database.Statement<[string], ChannelRow>;
    cursor: Database.Statement<[string], string>;
    setCursor: Database.Statement<[string, string]>;
    markClaimed: Database.Statement<[string, string]>;
    addPendingClaim: Database.Statement<PendingClaimRow>;
    removePendingClaims: Database.Statement<[string]>;
    allPendingClaims: Database.Statement<[], PendingClaimRow>;
    reserveAuthorization: Database.Statement<AuthorizationRow>;
    completeAuthorization: Database.Statement<[string, string, string, string]>;
    releaseAuthorization: Database.Statement<[string, string, string]>;
    authorization: Database.Statement<[string, string, string], AuthorizationRow>;
  };

  /** The batch transaction; better-sqlite3 rolls back and rethrows if the callback or COMMIT throws. */
  private readonly commitBatch: Database.Transaction<
    (batch: QueuedWrite[], logged: Map<string, string>) => (Error | undefined)[]
  >;
  /** The fold transaction: the whole log into vouchers and ledgers; returns the writes folded. */
  private readonly foldLog: Database.Transaction<() => number>;

  /** Opens (creating and migrating if needed) the store; prefer {@link openSqliteStore}. */
  constructor(options: SqliteStoreOptions) {
    this.maxBatchDelayMs = options.maxBatchDelayMs ?? 0;
    this.maxBatchSize = options.maxBatchSize ?? 512;
    if (!(this.maxBatchDelayMs >= 0)) throw new RangeError("maxBatchDelayMs must be >= 0");
    if (!(this.maxBatchSize >= 1)) throw new RangeError("maxBatchSize must be >= 1");
    this.foldRows = options.foldRows ?? 256;
    this.foldDelayMs = options.foldDelayMs ?? 200;
    if (!(this.foldRows >= 1)) throw new RangeError("foldRows must be >= 1");
    if (!(this.foldDelayMs >= 0)) throw new RangeError("foldDelayMs must be >= 0");

    const durable = options.durable !== false;
    this.background = durable && (options.fsync ?? "background") === "background" && options.path !== ":memory:";
    this.syncFile = options.syncFile ?? fs;
    this.onSync = options.onSync;
    this.walPath = `${options.path}-wal`;
    const db = new Database(options.path);
    try {
      // Set before anything else touches the file, so even the migration waits for other openers.
      db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 5000)}`);
      // WAL: a commit is one sequential append + one fsync, and readers never block the writer.
      const mode = db.pragma("journal_mode = WAL", { simple: true }) as string;
      if (mode !== "wal" && !(options.path === ":memory:" && mode === "memory")) {
        throw new Error(`cannot enable WAL on ${options.path} (journal_mode is ${mode})`);
      }
      // In WAL mode FULL fsyncs the WAL on every commit. NORMAL fsyncs only around checkpoints,
      // which keeps the file consistent but not the last commits: the "background" mode adds the
      // per-commit fsync itself, off the event loop, before any write is acknowledged.
      db.pragma(`synchronous = ${!durable ? "OFF" : this.background ? "NORMAL" : "FULL"}`);
      db.pragma("foreign_keys = ON");
      // The fold's GROUP BY sorts in memory, not in a temporary file per fold; and a larger page
      // cache (16 MiB, SQLite's default is 2) keeps the pages group commits and folds touch.
      db.pragma("temp_store = MEMORY");
      db.pragma("cache_size = -16384");
      db.pragma(
        `wal_autocheckpoint = ${Math.trunc(options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES)}`,
      );
      migrate(db);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;

    this.stmt = {
      insertVoucher: db.prepare(
        `INSERT INTO vouchers (channel_id, amount, signature, charge, charged_total, receipt, accepted_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      logWrite: db.prepare(
        `INSERT INTO voucher_log (kind, channel_id, amount, signature, charge, charged_total, receipt, accepted_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      logRows: db.prepare("SELECT * FROM voucher_log ORDER BY id"),
      clearLog: db.prepare("DELETE FROM voucher_log WHERE id <= ?"),
      // A log of new vouchers only, folded without a row through JavaScript: every voucher, then
      // per channel the total of its last write and its highest voucher (SQLite takes a bare
      // column next to max() from the row holding the max).
      foldVouchers: db.prepare(
        `INSERT INTO vouchers (channel_id, amount, signature, charge, charged_total, receipt, accepted_at)
         SELECT channel_id, amount, signature, charge, charged_total, receipt, accepted_at
         FROM voucher_log WHERE kind = 0 ORDER BY id
         ON CONFLICT DO NOTHING`,
      ),
      foldLedgers: db.prepare(
        `INSERT INTO ledgers (channel_id, charged_total, highest_amount, highest_signature, claimed_amount)
         SELECT top.channel_id, last.charged_total, top.amount, top.signature, '${ZERO}'
         FROM (SELECT channel_id, max(amount) AS amount, signature FROM voucher_log GROUP BY channel_id) AS top
         JOIN (SELECT channel_id, max(id) AS id FROM voucher_log GROUP BY channel_id) AS lastId
           ON lastId.channel_id = top.channel_id
         JOIN voucher_log AS last ON last.id = lastId.id
         WHERE true
         ON CONFLICT (channel_id) DO UPDATE SET
           charged_total = excluded.charged_total,
           highest_amount = max(highest_amount, excluded.highest_amount),
           highest_signature = CASE WHEN excluded.highest_amount > highest_amount
                                    THEN excluded.highest_signature ELSE highest_signature END`,
      ),
      emptyLog: db.prepare("DELETE FROM voucher_log"),
      logHasAdjustment: db.prepare<[], number>("SELECT 1 FROM voucher_log WHERE kind = 1 LIMIT 1").pluck(),
      adjustVoucher: db.prepare(
        "UPDATE vouchers SET charge = ?, charged_total = ?, receipt = ? WHERE channel_id = ? AND amount = ?",
      ),
      // In an upsert's SET, column names refer to the row before the update, so the order of the
      // assignments does not matter; fixed-width hex makes `>` numeric.
      upsertLedger: db.prepare(
        `INSERT INTO ledgers (channel_id, charged_total, highest_amount, highest_signature, claimed_amount)
         VALUES (?, ?, ?, ?, '${ZERO}')
         ON CONFLICT (channel_id) DO UPDATE SET
           charged_total = excluded.charged_total,
           highest_amount = max(highest_amount, excluded.highest_amount),
           highest_signature = CASE WHEN excluded.highest_amount > highest_amount
                                    THEN excluded.highest_signature ELSE highest_signature END`,
      ),
      voucherSignature: db
        .prepare<[string, string], string>("SELECT signature FROM vouchers WHERE channel_id = ? AND amount = ?")
        .pluck(),
      allLedgers: db.prepare("SELECT * FROM ledgers ORDER BY channel_id"),
      ledger: db.prepare("SELECT * FROM ledgers WHERE channel_id = ?"),
      voucherAmounts: db
        .prepare<[string, string], string>(
          "SELECT amount FROM vouchers WHERE channel_id = ? AND amount > ? ORDER BY amount",
        )
        .pluck(),
      pruneVouchers: db.prepare("DELETE FROM vouchers WHERE channel_id = ? AND amount <= ? AND accepted_at < ?"),
      voucher: db.prepare(
        `SELECT channel_id, amount, signature, charge, charged_total, receipt, accepted_at
         FROM vouchers WHERE channel_id = ? AND amount = ?`,
      ),
      coveringVoucher: db.prepare(
        `SELECT channel_id, amount, signature, charge, charged_total, receipt, accepted_at
         FROM vouchers WHERE channel_id = ? AND amount >= ? ORDER BY amount LIMIT 1`,
      ),
      upsertChannel: db.prepare(
        `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, claimed_on_chain, withdraw_delay,
                               withdraw_ready_at, status, opened_at_block, updated_at_block)
         VALUES (@channel_id, @payer, @payee, @token, @signer, @deposit, @claimed_on_chain, @withdraw_delay,
                 @withdraw_ready_at, @status, @opened_at_block, @updated_at_block)
         ON CONFLICT (channel_id) DO UPDATE SET
           payer = excluded.payer, payee = excluded.payee, token = excluded.token, signer = excluded.signer,
           deposit = excluded.deposit, claimed_on_chain = excluded.claimed_on_chain,
           withdraw_delay = excluded.withdraw_delay, withdraw_ready_at = excluded.withdraw_ready_at,
           status = excluded.status, opened_at_block = excluded.opened_at_block,
           updated_at_block = excluded.updated_at_block`,
      ),
      allChannels: db.prepare("SELECT * FROM channels ORDER BY channel_id"),
      channel: db.prepare("SELECT * FROM channels WHERE channel_id = ?"),
      cursor: db.prepare<[string], string>("SELECT block FROM cursors WHERE key = ?").pluck(),
      setCursor: db.prepare(
        "INSERT INTO cursors (key, block) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET block = excluded.block",
      ),
      markClaimed: db.prepare(
        `INSERT INTO ledgers (channel_id, charged_total, highest_amount, highest_signature, claimed_amount)
         VALUES (?, '${ZERO}', '${ZERO}', NULL, ?)
         ON CONFLICT (channel_id) DO UPDATE SET claimed_amount = max(claimed_amount, excluded.claimed_amount)`,
      ),
      addPendingClaim: db.prepare(
        `INSERT INTO pending_claims (tx_hash, channel_id, amount, nonce, sent_at)
         VALUES (@tx_hash, @channel_id, @amount, @nonce, @sent_at)
         ON CONFLICT (tx_hash, channel_id) DO UPDATE SET
           amount = excluded.amount, nonce = excluded.nonce, sent_at = excluded.sent_at`,
      ),
      removePendingClaims: db.prepare("DELETE FROM pending_claims WHERE tx_hash = ?"),
      allPendingClaims: db.prepare("SELECT * FROM pending_claims ORDER BY sent_at, tx_hash, channel_id"),
      reserveAuthorization: db.prepare(
        `INSERT INTO exact_authorizations (token, payer, nonce, value, tx_hash, created_at)
         VALUES (@token, @payer, @nonce, @value, @tx_hash, @created_at) ON CONFLICT DO NOTHING`,
      ),
      completeAuthorization: db.prepare(
        "UPDATE exact_authorizations SET tx_hash = ? WHERE token = ? AND payer = ? AND nonce = ?",
      ),
      releaseAuthorization: db.prepare(
        "DELETE FROM exact_authorizations WHERE token = ? AND payer = ? AND nonce = ? AND tx_hash IS NULL",
      ),
      authorization: db.prepare("SELECT * FROM exact_authorizations WHERE token = ? AND payer = ? AND nonce = ?"),
    };

    this.commitBatch = db.transaction((batch: QueuedWrite[], logged: Map<string, string>) =>
      this.logBatch(batch, logged),
    );
    this.foldLog = db.transaction(() => this.applyLog());
    try {
      // What a crash left in the log (the store was not closed): fold it before anything reads.
      this.fold(true);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /**
   * The connection's effective journal mode, synchronous level (0 OFF, 1 NORMAL, 2 FULL) and WAL
   * autocheckpoint size, as SQLite reports them: the durability promise rests on these, so tests
   * read them back rather than trust the options. `fsync` says who fsyncs each commit: the store
   * off the event loop ("background", with NORMAL), SQLite inside COMMIT ("commit", with FULL),
   * or nobody ("off").
   */
  connectionSettings(): {
    journalMode: string;
    synchronous: number;
    walAutocheckpoint: number;
    fsync: "background" | "commit" | "off";
  } {
    const synchronous = this.db.pragma("synchronous", { simple: true }) as number;
    return {
      journalMode: this.db.pragma("journal_mode", { simple: true }) as string,
      synchronous,
      walAutocheckpoint: this.db.pragma("wal_autocheckpoint", { simple: true }) as number,
      fsync: this.background ? "background" : synchronous === 0 ? "off" : "commit",
    };
  }

  failure(): Error | undefined {
    return this.syncFailure;
  }

  /** Group-commit counters since open. */
  stats(): SqliteStoreStats {
    return { ...this.counters };
  }

  recordVoucher(voucher: AcceptedVoucher): Promise<void> {
    return this.enqueue((resolve, reject) => ({
      kind: "record",
      channelId: u256(voucher.channelId),
      amount: u256(voucher.amount),
      signature: voucher.signature,
      charge: u256(voucher.charge),
      chargedTotal: u256(voucher.chargedTotal),
      receipt: voucher.receipt,
      acceptedAt: voucher.acceptedAt,
      resolve,
      reject,
    }));
  }

  adjustCharge(
    channelId: bigint,
    amount: bigint,
    charge: bigint,
    chargedTotal: bigint,
    receipt: string,
  ): Promise<void> {
    return this.enqueue((resolve, reject) => ({
      kind: "adjust",
      channelId: u256(channelId),
      amount: u256(amount),
      charge: u256(charge),
      chargedTotal: u256(chargedTotal),
      receipt,
      resolve,
      reject,
    }));
  }

  loadLedgers(): ChannelLedger[] {
    this.fold();
    return this.stmt.allLedgers.all().map(toLedger);
  }

  getLedger(channelId: bigint): ChannelLedger | undefined {
    this.fold();
    const row = this.stmt.ledger.get(u256(channelId));
    return row && toLedger(row);
  }

  loadVoucherAmounts(channelId: bigint, above = -1n): bigint[] {
    this.fold();
    // Every stored amount is at least 0, so -1 (stored as the empty string, below any hex) means all.
    return this.stmt.voucherAmounts.all(u256(channelId), above < 0n ? "" : u256(above)).map(fromU256);
  }

  pruneVouchers(floors: readonly { channelId: bigint; upTo: bigint }[], acceptedBefore: number): number[] {
    this.fold();
    const prune = this.db.transaction(() =>
      floors.map(
        ({ channelId, upTo }) => this.stmt.pruneVouchers.run(u256(channelId), u256(upTo), acceptedBefore).changes,
      ),
    );
    const removed = prune.immediate();
    this.syncNow();
    return removed;
  }

  findVoucher(channelId: bigint, amount: bigint): AcceptedVoucher | undefined {
    const id = u256(channelId);
    const key = u256(amount);
    if (this.unfolded.has(id + key)) this.fold();
    const row = this.stmt.voucher.get(id, key);
    return row && toVoucher(row);
  }

  findCoveringVoucher(channelId: bigint, atLeast: bigint): AcceptedVoucher | undefined {
    this.fold();
    const row = this.stmt.coveringVoucher.get(u256(channelId), u256(atLeast));
    return row && toVoucher(row);
  }

  upsertChannel(channel: ChannelRecord): void {
    this.stmt.upsertChannel.run({
      channel_id: u256(channel.channelId),
      payer: channel.payer,
      payee: channel.payee,
      token: channel.token,
      signer: channel.signer,
      deposit: u256(channel.deposit),
      claimed_on_chain: u256(channel.claimedOnChain),
      withdraw_delay: channel.withdrawDelay,
      withdraw_ready_at: channel.withdrawReadyAt,
      status: channel.status,
      opened_at_block: u256(channel.openedAtBlock),
      updated_at_block: u256(channel.updatedAtBlock),
    });
    this.syncNow();
  }

  loadChannels(): ChannelRecord[] {
    return this.stmt.allChannels.all().map(toChannel);
  }

  getChannel(channelId: bigint): ChannelRecord | undefined {
    const row = this.stmt.channel.get(u256(channelId));
    return row && toChannel(row);
  }

  getCursor(key: string): bigint | undefined {
    const block = this.stmt.cursor.get(key);
    return block === undefined ? undefined : fromU256(block);
  }

  setCursor(key: string, block: bigint): void {
    this.stmt.setCursor.run(key, u256(block));
    this.syncNow();
  }

  markClaimed(channelId: bigint, amount: bigint): void {
    this.stmt.markClaimed.run(u256(channelId), u256(amount));
    this.syncNow();
  }

  addPendingClaim(claim: PendingClaim): void {
    this.stmt.addPendingClaim.run({
      tx_hash: claim.txHash,
      channel_id: u256(claim.channelId),
      amount: u256(claim.amount),
      nonce: claim.nonce,
      sent_at: claim.sentAt,
    });
    this.syncNow();
  }

  removePendingClaims(txHash: Hex): void {
    this.stmt.removePendingClaims.run(txHash);
    this.syncNow();
  }

  loadPendingClaims(): PendingClaim[] {
    return this.stmt.allPendingClaims.all().map(toPendingClaim);
  }

  reserveAuthorization(authorization: Omit<ExactAuthorization, "txHash">): boolean {
    const info = this.stmt.reserveAuthorization.run({
      ...authorizationKey(authorization.token, authorization.payer, authorization.nonce),
      value: u256(authorization.value),
      tx_hash: null,
      created_at: authorization.createdAt,
    });
    if (info.changes === 0) return false;
    this.syncNow();
    return true;
  }

  completeAuthorization(token: Address, payer: Address, nonce: Hex, txHash: Hex): void {
    const key = authorizationKey(token, payer, nonce);
    this.stmt.completeAuthorization.run(txHash.toLowerCase(), key.token, key.payer, key.nonce);
    this.syncNow();
  }

  releaseAuthorization(token: Address, payer: Address, nonce: Hex): void {
    const key = authorizationKey(token, payer, nonce);
    this.stmt.releaseAuthorization.run(key.token, key.payer, key.nonce);
    this.syncNow();
  }

  findAuthorization(token: Address, payer: Address, nonce: Hex): ExactAuthorization | undefined {
    const key = authorizationKey(token, payer, nonce);
    const row = this.stmt.authorization.get(key.token, key.payer, key.nonce);
    return row && toAuthorization(row);
  }

  /** Commits queued writes and waits for their fsync (settling their promises), then closes the file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    if (this.syncing || this.unsynced.length > 0) {
      await new Promise<void>((resolve) => this.syncDrained.push(resolve));
    }
    clearTimeout(this.foldTimer);
    if (this.foldSoon) clearImmediate(this.foldSoon);
    try {
      // Folded now rather than on the next open; a failure leaves the log for the next open.
      if (!this.syncFailure) this.fold();
    } catch {
      // (the log is durable: nothing is lost)
    }
    this.db.close();
    if (this.walFd !== undefined) fs.closeSync(this.walFd);
    this.walFd = undefined;
  }

  private enqueue(make: (resolve: () => void, reject: (error: unknown) => void) => QueuedWrite): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.closed) throw new Error("SqliteStore is closed");
      if (this.syncFailure) throw this.syncFailure;
      // A value that cannot be encoded throws here and rejects this call only.
      this.queue.push(make(resolve, reject));
      if (this.queue.length >= this.maxBatchSize) this.flush();
      else if (this.syncing) {
        // An fsync is running: commit when it returns, together with everything else that
        // arrives meanwhile. A commit now would wait for the next fsync all the same, and one
        // commit instead of several writes fewer WAL pages (each commit rewrites whole pages).
      } else if (this.flushTimer === undefined) {
        // setImmediate, not queueMicrotask: a microtask would commit before the event loop reads
        // the other requests already waiting on its sockets, giving batches of one under load.
        this.flushTimer =
          this.maxBatchDelayMs > 0
            ? { timeout: setTimeout(this.flush, this.maxBatchDelayMs) }
            : { immediate: setImmediate(this.flush) };
      }
    });
  }

  /** Commits the whole queue in one transaction and settles its promises. */
  private readonly flush = (): void => {
    const timer = this.flushTimer;
    if (timer !== undefined) {
      if ("immediate" in timer) clearImmediate(timer.immediate);
      else clearTimeout(timer.timeout);
      this.flushTimer = undefined;
    }
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    this.counters.batches++;
    this.counters.writes += batch.length;
    this.counters.maxBatchSize = Math.max(this.counters.maxBatchSize, batch.length);

    let outcomes: (Error | undefined)[];
    const logged = new Map<string, string>();
    try {
      outcomes = this.commitBatch.immediate(batch, logged);
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    // Committed: the batch's vouchers are now the log's too.
    for (const [key, signature] of logged) this.unfolded.set(key, signature);
    this.logged += outcomes.reduce((n, error) => (error ? n : n + 1), 0);
    this.scheduleFold();
    batch.forEach((w, i) => {
      const error = outcomes[i];
      if (error) w.reject(error);
      else if (this.background) this.unsynced.push(w);
      else w.resolve();
    });
    if (this.unsynced.length > 0) this.startSync();
  };

  /**
   * Starts an fdatasync of the WAL for every write committed so far, unless one is running: the
   * writes committed meanwhile wait for the next one, started when it returns. Only writes whose
   * commit returned before the fdatasync was issued are settled by it.
   */
  private startSync(): void {
    if (this.syncing || this.syncFailure) return;
    const covered = this.unsynced;
    this.unsynced = [];
    this.counters.syncs++;
    let fd: number;
    try {
      fd = this.walDescriptor();
    } catch (error) {
      this.failSync(error, covered);
      return;
    }
    this.syncing = true;
    const started = process.hrtime.bigint();
    this.syncFile.fdatasync(fd, (error) => {
      this.syncing = false;
      this.onSync?.(Number(process.hrtime.bigint() - started) / 1e9);
      if (error) {
        this.failSync(error, covered);
        return;
      }
      for (const w of covered) w.resolve();
      if (this.queue.length > 0 && this.flushTimer === undefined)
        this.flush(); // commits, then starts the next fsync
      else if (this.unsynced.length > 0) this.startSync();
      else for (const resolve of this.syncDrained.splice(0)) resolve();
    });
  }

  /** Rejects every write not yet acknowledged and refuses all later ones. */
  private failSync(cause: unknown, covered: readonly QueuedWrite[] = []): void {
    this.syncFailure = new StoreSyncError(cause);
    const waiting = [...covered, ...this.unsynced, ...this.queue];
    this.unsynced = [];
    this.queue = [];
    for (const w of waiting) w.reject(this.syncFailure);
    for (const resolve of this.syncDrained.splice(0)) resolve();
  }

  /**
   * The WAL file's descriptor, opened on first use. SQLite keeps the WAL file (it truncates and
   * rewrites it, never replaces it) while a connection is open, and this store's connection stays
   * open until close(), so one descriptor serves every fsync. The first open also fsyncs the
   * directory, so the WAL's directory entry is durable too.
   */
  private walDescriptor(): number {
    if (this.walFd !== undefined) return this.walFd;
    const fd = fs.openSync(this.walPath, "r");
    try {
      const dir = fs.openSync(path.dirname(this.walPath), "r");
      try {
        fs.fsyncSync(dir);
      } finally {
        fs.closeSync(dir);
      }
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    this.walFd = fd;
    return fd;
  }

  /** After a write off the request path: fsync it before returning, as `synchronous = FULL` would. */
  private syncNow(): void {
    if (!this.background) return;
    if (this.syncFailure) throw this.syncFailure;
    try {
      this.syncFile.fdatasyncSync(this.walDescriptor());
    } catch (error) {
      this.failSync(error);
      throw this.syncFailure;
    }
  }

  /**
   * Runs inside the batch transaction: appends each write to the log, or returns its own failure.
   * The batch's new vouchers' signatures go to `logged` (merged into memory once committed), so a
   * later write of the same batch sees them.
   */
  private logBatch(batch: QueuedWrite[], logged: Map<string, string>): (Error | undefined)[] {
    const { logWrite, voucherSignature } = this.stmt;
    return batch.map((w): Error | undefined => {
      const key = w.channelId + w.amount;
      const inLog = logged.get(key) ?? this.unfolded.get(key);
      if (w.kind === "record") {
        const stored = inLog ?? voucherSignature.get(w.channelId, w.amount);
        if (stored !== undefined) {
          // Already stored or logged: a retry of the same voucher is fine and changes nothing;
          // another signature for the same amount is a caller bug. Hex case is not part of a
          // signature's identity.
          return stored.toLowerCase() === w.signature.toLowerCase()
            ? undefined
            : new DuplicateVoucherError(fromU256(w.channelId), fromU256(w.amount));
        }
        logWrite.run(0, w.channelId, w.amount, w.signature, w.charge, w.chargedTotal, w.receipt, w.acceptedAt);
        logged.set(key, w.signature);
        return undefined;
      }
      if (inLog === undefined && voucherSignature.get(w.channelId, w.amount) === undefined) {
        return new VoucherNotFoundError(fromU256(w.channelId), fromU256(w.amount));
      }
      logWrite.run(1, w.channelId, w.amount, null, w.charge, w.chargedTotal, w.receipt, null);
      return undefined;
    });
  }

  /**
   * Runs inside the fold transaction: applies the whole log, in order, to vouchers and ledgers
   * (one ledger upsert per channel) and empties it. Returns the writes folded.
   */
  private applyLog(): number {
    // Adjustments must apply in order, after their voucher: only a log without any (the common
    // case; they come from "upto" routes) is folded in SQL alone. Read from the log itself, which
    // another process may have written.
    if (this.stmt.logHasAdjustment.get() === undefined) {
      this.stmt.foldVouchers.run();
      this.stmt.foldLedgers.run();
      return this.stmt.emptyLog.run().changes;
    }
    const { insertVoucher, adjustVoucher, upsertLedger, logRows, clearLog } = this.stmt;
    const deltas = new Map<string, LedgerDelta>();
    const deltaOf = (channelId: string): LedgerDelta => {
      let delta = deltas.get(channelId);
      if (!delta) deltas.set(channelId, (delta = { chargedTotal: ZERO, highestAmount: ZERO, highestSignature: null }));
      return delta;
    };
    let last = 0;
    let count = 0;
    for (const w of logRows.all()) {
      last = w.id;
      count++;
      if (w.kind === 0) {
        const signature = w.signature ?? "";
        const info = insertVoucher.run(
          w.channel_id,
          w.amount,
          signature,
          w.charge,
          w.charged_total,
          w.receipt,
          w.accepted_at ?? 0,
        );
        // Checked when logged; only a second process folding the same log could have been first.
        if (info.changes === 0) continue;
        const delta = deltaOf(w.channel_id);
        delta.chargedTotal = w.charged_total;
        if (w.amount > delta.highestAmount) {
          delta.highestAmount = w.amount;
          delta.highestSignature = signature;
        }
      } else if (adjustVoucher.run(w.charge, w.charged_total, w.receipt, w.channel_id, w.amount).changes > 0) {
        deltaOf(w.channel_id).chargedTotal = w.charged_total;
      }
    }
    for (const [channelId, d] of deltas)
      upsertLedger.run(channelId, d.chargedTotal, d.highestAmount, d.highestSignature);
    if (count > 0) clearLog.run(last);
    return count;
  }

  /**
   * Folds the log into vouchers and ledgers now, if it holds anything (`always`: look even when
   * this connection logged nothing, as on open). Throws if the transaction fails; the log is
   * then left as it was, for the next fold.
   */
  private fold(always = false): void {
    // After a failed fsync nothing more is written; the next process folds the log on open.
    if ((this.logged === 0 && !always) || this.syncFailure) return;
    clearTimeout(this.foldTimer);
    this.foldTimer = undefined;
    if (this.foldSoon) clearImmediate(this.foldSoon);
    this.foldSoon = undefined;
    const folded = this.foldLog.immediate();
    if (folded > 0) {
      this.counters.folds++;
      this.counters.folded += folded;
    }
    this.logged = 0;
    this.unfolded.clear();
  }

  /** After a group commit: a fold at the next turn once the log is large, else after foldDelayMs. */
  private scheduleFold(): void {
    if (this.logged === 0 || this.foldSoon) return;
    const run = () => {
      try {
        this.fold();
      } catch {
        // A lock held elsewhere, an I/O error: the log keeps the writes; try again later.
        this.foldTimer ??= setTimeout(run, this.foldDelayMs).unref();
      }
    };
    if (this.logged >= this.foldRows) {
      clearTimeout(this.foldTimer);
      this.foldTimer = undefined;
      this.foldSoon = setImmediate(() => {
        this.foldSoon = undefined;
        run();
      });
    } else if (this.foldTimer === undefined) {
      this.foldTimer = setTimeout(() => {
        this.foldTimer = undefined;
        run();
      }, this.foldDelayMs).unref();
    }
  }
}

/** Opens the SQLite {@link PaymentStore} at `options.path`, creating and migrating it as needed. */
export function openSqliteStore(options: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(options);
}
