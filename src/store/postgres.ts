import pg from "pg";
import type { Address, Hex } from "viem";
import type { ChannelRecord } from "../protocol/channel";
import { DuplicateVoucherError, VoucherNotFoundError } from "./errors";
import { migratePg } from "./pgMigrations";
import {
  authorizationKey,
  rowReaders,
  type AuthorizationRow,
  type ChannelRow,
  type LedgerRow,
  type PendingClaimRow,
  type VoucherRow,
} from "./rows";
import { SyncQuery } from "./syncQuery";
import type {
  AcceptedVoucher,
  AuthorizationStore,
  ChannelLedger,
  ChargeOutcome,
  ChargeRequest,
  ExactAuthorization,
  PaymentStore,
  PendingClaim,
} from "./types";

/** Options of {@link openPgStore}. */
export interface PgStoreOptions {
  /**
   * `postgres://user@host:port/database`; a `?options=-c search_path=<schema>` suffix puts the
   * tables in that schema (created if missing).
   */
  readonly url: string;
  /** A queue reaching this many writes is committed in one transaction at once. Default 512. */
  readonly maxBatchSize?: number;
  /** How long a synchronous call (watcher, settler, start-up) waits for the database. Default 30,000 ms. */
  readonly syncTimeoutMs?: number;
}

/** Counters for monitoring and benchmarks. */
export interface PgStoreStats {
  /** Group-commit transactions committed. */
  readonly commits: number;
  /** Writes (recordVoucher, adjustCharge, chargeVoucher) settled by them. */
  readonly writes: number;
  /** Largest batch so far. */
  readonly maxBatchSize: number;
  /** Transactions run again after a deadlock or serialization failure. */
  readonly retries: number;
}

const MAX_U256 = (1n << 256n) - 1n;
/** SQLSTATEs after which the same transaction may simply be run again (serialization failure, deadlock). */
const RETRYABLE = new Set(["40001", "40P01"]);
const MAX_ATTEMPTS = 5;

/** A uint256 as the decimal text a NUMERIC(78, 0) parameter takes. */
function dec(value: bigint): string {
  if (typeof value !== "bigint" || value < 0n || value > MAX_U256) {
    throw new RangeError(`expected a uint256 bigint, got ${String(value)}`);
  }
  return value.toString();
}

const big = (text: string): bigint => BigInt(text);
const { toLedger, toVoucher, toChannel, toPendingClaim, toAuthorization } = rowReaders(big);

/** A queued group-commit write; its values were checked when it was queued. */
type QueuedWrite =
  | { readonly kind: "record"; readonly voucher: AcceptedVoucher; settle: Settle<void> }
  | {
      readonly kind: "adjust";
      readonly channelId: bigint;
      readonly amount: bigint;
      readonly charge: bigint;
      readonly chargedTotal: bigint;
      readonly receipt: string;
      settle: Settle<void>;
    }
  | { readonly kind: "charge"; readonly request: ChargeRequest; settle: Settle<ChargeOutcome> };

interface Settle<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** A channel's ledger while a batch works on it (under its row lock). */
interface WorkingLedger {
  channelId: bigint;
  charged: bigint;
  highest: bigint;
  highestSignature: Hex | null;
  claimed: bigint;
  dirty: boolean;
}

const VOUCHER_COLUMNS = "channel_id, amount, signature, charge, charged_total, receipt, accepted_at";
const LEDGER_COLUMNS = "channel_id, charged_total, highest_amount, highest_signature, claimed_amount";

/**
 * The PostgreSQL {@link PaymentStore}, shared by several server instances (docs/scaling.md).
 *
 * Request path: every write is queued and the queue is committed in one transaction (group
 * commit) as soon as the previous one returns, so concurrent requests of one instance share a
 * commit; a write resolves once its COMMIT has returned (`synchronous_commit` on: the WAL is
 * flushed). A batch first locks the ledger rows of its channels (in channel order, so two
 * instances never deadlock) and decides each {@link chargeVoucher} against the stored ledger
 * while it holds them: that lock, not any instance's memory, is what keeps a voucher from being
 * charged twice or the charges from exceeding the best voucher.
 *
 * Everything else (watcher, settler, start-up, retries) is synchronous, like the SQLite store's,
 * through a {@link SyncQuery} connection.
 */
export class PgStore implements PaymentStore, AuthorizationStore {
  private readonly pool: pg.Pool;
  private readonly sync: SyncQuery;
  private readonly maxBatchSize: number;
  private queue: QueuedWrite[] = [];
  private committing: Promise<void> | undefined;
  private scheduled = false;
  private closed = false;
  private readonly counters = { commits: 0, writes: 0, maxBatchSize: 0, retries: 0 };

  /** Use {@link openPgStore}, which migrates the schema first. */
  constructor(options: PgStoreOptions) {
    this.maxBatchSize = options.maxBatchSize ?? 512;
    this.pool = new pg.Pool({ connectionString: options.url, max: 2 });
    // An idle connection dropped by the server must not crash the process; the next query reconnects.
    this.pool.on("error", () => undefined);
    this.sync = new SyncQuery({ connectionString: options.url }, options.syncTimeoutMs);
  }

  /** Creates the schema named in the URL's search_path if missing, then migrates it. */
  async migrate(): Promise<number[]> {
    const client = await this.pool.connect();
    try {
      return await migratePg(client);
    } finally {
      client.release();
    }
  }

  /** Group-commit counters since open. */
  stats(): PgStoreStats {
    return { ...this.counters };
  }

  recordVoucher(voucher: AcceptedVoucher): Promise<void> {
    return this.enqueue<void>((settle) => {
      for (const v of [voucher.channelId, voucher.amount, voucher.charge, voucher.chargedTotal]) dec(v);
      return { kind: "record", voucher, settle };
    });
  }

  adjustCharge(
    channelId: bigint,
    amount: bigint,
    charge: bigint,
    chargedTotal: bigint,
    receipt: string,
  ): Promise<void> {
    return this.enqueue<void>((settle) => {
      for (const v of [channelId, amount, charge, chargedTotal]) dec(v);
      return { kind: "adjust", channelId, amount, charge, chargedTotal, receipt, settle };
    });
  }

  chargeVoucher(request: ChargeRequest): Promise<ChargeOutcome> {
    return this.enqueue<ChargeOutcome>((settle) => {
      for (const v of [request.channelId, request.amount, request.charge, request.floor]) dec(v);
      return { kind: "charge", request, settle };
    });
  }

  async acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.holder = excluded.holder OR leases.expires_at < now()`,
      [name, holder, ttlMs],
    );
    return rowCount === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.pool.query("DELETE FROM leases WHERE name = $1 AND holder = $2", [name, holder]);
  }

  loadLedgers(): ChannelLedger[] {
    return this.sync.query<LedgerRow>(`SELECT ${LEDGER_COLUMNS} FROM ledgers ORDER BY channel_id`).map(toLedger);
  }

  getLedger(channelId: bigint): ChannelLedger | undefined {
    const [row] = this.sync.query<LedgerRow>(`SELECT ${LEDGER_COLUMNS} FROM ledgers WHERE channel_id = $1`, [
      dec(channelId),
    ]);
    return row && toLedger(row);
  }

  loadVoucherAmounts(channelId: bigint, above = -1n): bigint[] {
    return this.sync
      .query<{ amount: string }>("SELECT amount FROM vouchers WHERE channel_id = $1 AND amount > $2 ORDER BY amount", [
        dec(channelId),
        above.toString(),
      ])
      .map((row) => big(row.amount));
  }

  pruneVouchers(floors: readonly { channelId: bigint; upTo: bigint }[], acceptedBefore: number): number[] {
    if (floors.length === 0) return [];
    const rows = this.sync.query<{ i: number; n: string }>(
      `WITH f AS (SELECT * FROM unnest($1::numeric[], $2::numeric[]) WITH ORDINALITY AS f(channel_id, up_to, i)),
            gone AS (DELETE FROM vouchers v USING f
                     WHERE v.channel_id = f.channel_id AND v.amount <= f.up_to AND v.accepted_at < $3
                     RETURNING f.i)
       SELECT f.i::int AS i, (SELECT count(*) FROM gone WHERE gone.i = f.i) AS n FROM f ORDER BY f.i`,
      [floors.map((f) => dec(f.channelId)), floors.map((f) => dec(f.upTo)), acceptedBefore],
    );
    return rows.map((row) => Number(row.n));
  }

  findVoucher(channelId: bigint, amount: bigint): AcceptedVoucher | undefined {
    const [row] = this.sync.query<VoucherRow>(
      `SELECT ${VOUCHER_COLUMNS} FROM vouchers WHERE channel_id = $1 AND amount = $2`,
      [dec(channelId), dec(amount)],
    );
    return row && toVoucher(row);
  }

  findCoveringVoucher(channelId: bigint, atLeast: bigint): AcceptedVoucher | undefined {
    const [row] = this.sync.query<VoucherRow>(
      `SELECT ${VOUCHER_COLUMNS} FROM vouchers WHERE channel_id = $1 AND amount >= $2 ORDER BY amount LIMIT 1`,
      [dec(channelId), dec(atLeast)],
    );
    return row && toVoucher(row);
  }

  /**
   * Inserts or replaces a channel's record, unless the stored one was read at a later block:
   * several instances' watchers write the same chain facts, and one lagging behind must not undo
   * a newer record.
   */
  upsertChannel(channel: ChannelRecord): void {
    this.sync.run(
      `INSERT INTO channels (channel_id, payer, payee, token, signer, deposit, claimed_on_chain, withdraw_delay,
                             withdraw_ready_at, status, opened_at_block, updated_at_block)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       ON CONFLICT (channel_id) DO UPDATE SET
         payer = excluded.payer, payee = excluded.payee, token = excluded.token, signer = excluded.signer,
         deposit = excluded.deposit, claimed_on_chain = excluded.claimed_on_chain,
         withdraw_delay = excluded.withdraw_delay, withdraw_ready_at = excluded.withdraw_ready_at,
         status = excluded.status, opened_at_block = excluded.opened_at_block,
         updated_at_block = excluded.updated_at_block
       WHERE channels.updated_at_block <= excluded.updated_at_block`,
      [
        dec(channel.channelId),
        channel.payer,
        channel.payee,
        channel.token,
        channel.signer,
        dec(channel.deposit),
        dec(channel.claimedOnChain),
        channel.withdrawDelay,
        channel.withdrawReadyAt,
        channel.status,
        dec(channel.openedAtBlock),
        dec(channel.updatedAtBlock),
      ],
    );
  }

  loadChannels(): ChannelRecord[] {
    return this.sync.query<ChannelRow>("SELECT * FROM channels ORDER BY channel_id").map(toChannel);
  }

  getChannel(channelId: bigint): ChannelRecord | undefined {
    const [row] = this.sync.query<ChannelRow>("SELECT * FROM channels WHERE channel_id = $1", [dec(channelId)]);
    return row && toChannel(row);
  }

  getCursor(key: string): bigint | undefined {
    const [row] = this.sync.query<{ block: string }>("SELECT block FROM cursors WHERE key = $1", [key]);
    return row && big(row.block);
  }

  setCursor(key: string, block: bigint): void {
    this.sync.run(
      "INSERT INTO cursors (key, block) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET block = excluded.block",
      [key, dec(block)],
    );
  }

  markClaimed(channelId: bigint, amount: bigint): void {
    this.sync.run(
      `INSERT INTO ledgers (${LEDGER_COLUMNS}) VALUES ($1, 0, 0, NULL, $2)
       ON CONFLICT (channel_id) DO UPDATE SET claimed_amount = GREATEST(ledgers.claimed_amount, excluded.claimed_amount)`,
      [dec(channelId), dec(amount)],
    );
  }

  addPendingClaim(claim: PendingClaim): void {
    this.sync.run(
      `INSERT INTO pending_claims (tx_hash, channel_id, amount, nonce, sent_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tx_hash, channel_id) DO UPDATE SET
         amount = excluded.amount, nonce = excluded.nonce, sent_at = excluded.sent_at`,
      [claim.txHash, dec(claim.channelId), dec(claim.amount), claim.nonce, claim.sentAt],
    );
  }

  removePendingClaims(txHash: Hex): void {
    this.sync.run("DELETE FROM pending_claims WHERE tx_hash = $1", [txHash]);
  }

  loadPendingClaims(): PendingClaim[] {
    return this.sync
      .query<PendingClaimRow>("SELECT * FROM pending_claims ORDER BY sent_at, tx_hash, channel_id")
      .map(toPendingClaim);
  }

  /*
   * The exact fallback's authorizations: synchronous like the SQLite store's, each one statement
   * committed on its own. The primary key makes a reservation atomic across instances: of two
   * instances handed the same authorization at once, one inserts it and the other is refused.
   */

  reserveAuthorization(authorization: Omit<ExactAuthorization, "txHash">): boolean {
    const key = authorizationKey(authorization.token, authorization.payer, authorization.nonce);
    return (
      this.sync.run(
        `INSERT INTO exact_authorizations (token, payer, nonce, value, tx_hash, created_at)
         VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT DO NOTHING`,
        [key.token, key.payer, key.nonce, dec(authorization.value), authorization.createdAt],
      ) === 1
    );
  }

  completeAuthorization(token: Address, payer: Address, nonce: Hex, txHash: Hex): void {
    const key = authorizationKey(token, payer, nonce);
    this.sync.run("UPDATE exact_authorizations SET tx_hash = $1 WHERE token = $2 AND payer = $3 AND nonce = $4", [
      txHash.toLowerCase(),
      key.token,
      key.payer,
      key.nonce,
    ]);
  }

  releaseAuthorization(token: Address, payer: Address, nonce: Hex): void {
    const key = authorizationKey(token, payer, nonce);
    this.sync.run(
      "DELETE FROM exact_authorizations WHERE token = $1 AND payer = $2 AND nonce = $3 AND tx_hash IS NULL",
      [key.token, key.payer, key.nonce],
    );
  }

  findAuthorization(token: Address, payer: Address, nonce: Hex): ExactAuthorization | undefined {
    const key = authorizationKey(token, payer, nonce);
    const [row] = this.sync.query<AuthorizationRow>(
      "SELECT * FROM exact_authorizations WHERE token = $1 AND payer = $2 AND nonce = $3",
      [key.token, key.payer, key.nonce],
    );
    return row && toAuthorization(row);
  }

  /** Commits queued writes (settling their promises), then closes both connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.committing || this.queue.length > 0) {
      if (!this.committing) this.flush();
      await this.committing;
    }
    await this.pool.end();
    await this.sync.close();
  }

  private enqueue<T>(make: (settle: Settle<T>) => QueuedWrite): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) throw new Error("PgStore is closed");
      // A value that cannot be encoded throws here and rejects this call only.
      this.queue.push(make({ resolve, reject } as Settle<T>));
      if (this.committing || this.scheduled) return; // joins the next batch
      this.scheduled = true;
      // setImmediate: the requests the event loop has already read this turn join the batch.
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    });
  }

  /** Starts committing the queue (up to maxBatchSize) unless a commit runs; the rest follows it. */
  private flush(): void {
    if (this.committing || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatchSize);
    this.counters.writes += batch.length;
    this.counters.maxBatchSize = Math.max(this.counters.maxBatchSize, batch.length);
    this.committing = this.commit(batch).finally(() => {
      this.committing = undefined;
      this.flush();
    });
  }

  /** Runs a batch's transaction (again after a deadlock) and settles every write of it. */
  private async commit(batch: QueuedWrite[]): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await this.pool.connect();
      for (let attempt = 1; ; attempt++) {
        try {
          const settle = await this.runBatch(client, batch);
          this.counters.commits++;
          settle();
          return;
        } catch (error) {
          await client.query("ROLLBACK").catch(() => undefined);
          const code = (error as { code?: string }).code;
          if (attempt >= MAX_ATTEMPTS || code === undefined || !RETRYABLE.has(code)) throw error;
          this.counters.retries++;
        }
      }
    } catch (error) {
      for (const w of batch) w.settle.reject(error);
      // A connection that failed mid-transaction is not given back to the pool.
      client?.release(error instanceof Error ? error : true);
      client = undefined;
    } finally {
      client?.release();
    }
  }

  /**
   * One batch transaction: lock the ledgers, read the vouchers the batch names, decide every write
   * in call order, write the results, commit. Returns what settles the writes once committed.
   */
  private async runBatch(client: pg.PoolClient, batch: readonly QueuedWrite[]): Promise<() => void> {
    const keyOf = (channelId: bigint, amount: bigint) => `${channelId}:${amount}`;
    const channelIds = new Set<bigint>();
    const keys = new Map<string, { channelId: bigint; amount: bigint }>();
    for (const w of batch) {
      const [channelId, amount] =
        w.kind === "record"
          ? [w.voucher.channelId, w.voucher.amount]
          : w.kind === "adjust"
            ? [w.channelId, w.amount]
            : [w.request.channelId, w.request.amount];
      channelIds.add(channelId);
      keys.set(keyOf(channelId, amount), { channelId, amount });
    }
    await client.query("BEGIN");
    // Creates missing ledgers and locks all of the batch's, in channel order. The vouchers are
    // read by the next statement, whose snapshot is taken after the locks are held, so it sees
    // every voucher another instance committed on these channels.
    const locked = await client.query<LedgerRow>(
      `INSERT INTO ledgers (${LEDGER_COLUMNS})
       SELECT c, 0, 0, NULL, 0 FROM unnest($1::numeric[]) AS c ORDER BY c
       ON CONFLICT (channel_id) DO UPDATE SET charged_total = ledgers.charged_total
       RETURNING ${LEDGER_COLUMNS}`,
      [[...channelIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(dec)],
    );
    const ledgers = new Map<bigint, WorkingLedger>();
    for (const row of locked.rows) {
      const l = toLedger(row);
      ledgers.set(l.channelId, {
        channelId: l.channelId,
        charged: l.chargedTotal,
        highest: l.highestAmount,
        highestSignature: l.highestSignature,
        claimed: l.claimedAmount,
        dirty: false,
      });
    }
    const stored = new Map<string, AcceptedVoucher>();
    const found = await client.query<VoucherRow>(
      `SELECT v.channel_id, v.amount, v.signature, v.charge, v.charged_total, v.receipt, v.accepted_at
       FROM vouchers v JOIN unnest($1::numeric[], $2::numeric[]) AS k(c, a) ON v.channel_id = k.c AND v.amount = k.a`,
      [[...keys.values()].map((k) => dec(k.channelId)), [...keys.values()].map((k) => dec(k.amount))],
    );
    for (const row of found.rows) {
      const v = toVoucher(row);
      stored.set(keyOf(v.channelId, v.amount), v);
    }

    const inserts: AcceptedVoucher[] = [];
    const adjusts = new Map<string, AcceptedVoucher>();
    const outcomes: (() => void)[] = [];
    const snapshot = (l: WorkingLedger): ChannelLedger => ({
      channelId: l.channelId,
      chargedTotal: l.charged,
      highestAmount: l.highest,
      highestSignature: l.highestSignature,
      claimedAmount: l.claimed,
    });
    const raise = (l: WorkingLedger, amount: bigint, signature: Hex) => {
      if (amount > l.highest) {
        l.highest = amount;
        l.highestSignature = signature;
      }
    };
    for (const w of batch) {
      if (w.kind === "record") {
        const v = w.voucher;
        const key = keyOf(v.channelId, v.amount);
        const existing = stored.get(key);
        if (existing) {
          // A retry of the same voucher changes nothing; another signature for the amount is a bug.
          const error =
            existing.signature.toLowerCase() === v.signature.toLowerCase()
              ? undefined
              : new DuplicateVoucherError(v.channelId, v.amount);
          outcomes.push(() => (error ? w.settle.reject(error) : w.settle.resolve()));
          continue;
        }
        const l = ledgers.get(v.channelId) as WorkingLedger;
        stored.set(key, v);
        inserts.push(v);
        l.charged = v.chargedTotal;
        raise(l, v.amount, v.signature);
        l.dirty = true;
        outcomes.push(() => w.settle.resolve());
      } else if (w.kind === "adjust") {
        const key = keyOf(w.channelId, w.amount);
        const existing = stored.get(key);
        if (!existing) {
          const error = new VoucherNotFoundError(w.channelId, w.amount);
          outcomes.push(() => w.settle.reject(error));
          continue;
        }
        const l = ledgers.get(w.channelId) as WorkingLedger;
        // Lowered by the difference, not set: other instances may have charged the channel since.
        l.charged -= existing.charge - w.charge;
        l.dirty = true;
        const next = { ...existing, charge: w.charge, chargedTotal: w.chargedTotal, receipt: w.receipt };
        stored.set(key, next);
        if (inserts.includes(existing)) inserts[inserts.indexOf(existing)] = next;
        else adjusts.set(key, next);
        outcomes.push(() => w.settle.resolve());
      } else {
        const r = w.request;
        const key = keyOf(r.channelId, r.amount);
        const l = ledgers.get(r.channelId) as WorkingLedger;
        const existing = stored.get(key);
        let outcome: ChargeOutcome;
        if (existing) {
          outcome = { kind: "stored", voucher: existing, ledger: snapshot(l) };
        } else if (r.amount <= (r.floor > l.claimed ? r.floor : l.claimed)) {
          outcome = { kind: "below_floor", ledger: snapshot(l) };
        } else if (l.charged + r.charge > (r.amount > l.highest ? r.amount : l.highest)) {
          outcome = { kind: "insufficient", ledger: snapshot(l) };
        } else {
          l.charged += r.charge;
          raise(l, r.amount, r.signature);
          l.dirty = true;
          const voucher: AcceptedVoucher = {
            channelId: r.channelId,
            amount: r.amount,
            signature: r.signature,
            charge: r.charge,
            chargedTotal: l.charged,
            receipt: r.sign(l.charged),
            acceptedAt: r.acceptedAt,
          };
          stored.set(key, voucher);
          inserts.push(voucher);
          outcome = { kind: "accepted", voucher, ledger: snapshot(l) };
        }
        outcomes.push(() => w.settle.resolve(outcome));
      }
    }

    const dirty = [...ledgers.values()].filter((l) => l.dirty);
    if (inserts.length > 0 || adjusts.size > 0 || dirty.length > 0) {
      // One round trip for every write of the batch.
      await client.query(
        `WITH inserted AS (
           INSERT INTO vouchers (${VOUCHER_COLUMNS})
           SELECT * FROM unnest($1::numeric[], $2::numeric[], $3::text[], $4::numeric[], $5::numeric[], $6::text[],
                                $7::bigint[])
         ), adjusted AS (
           UPDATE vouchers v SET charge = u.charge, charged_total = u.charged_total, receipt = u.receipt
           FROM unnest($8::numeric[], $9::numeric[], $10::numeric[], $11::numeric[], $12::text[])
             AS u(channel_id, amount, charge, charged_total, receipt)
           WHERE v.channel_id = u.channel_id AND v.amount = u.amount
         ), ledgered AS (
           UPDATE ledgers l SET charged_total = u.c, highest_amount = u.h, highest_signature = u.s
           FROM unnest($13::numeric[], $14::numeric[], $15::numeric[], $16::text[]) AS u(id, c, h, s)
           WHERE l.channel_id = u.id
         )
         SELECT 1`,
        [
          ...voucherColumns(inserts),
          ...adjustColumns([...adjusts.values()]),
          dirty.map((l) => dec(l.channelId)),
          dirty.map((l) => dec(l.charged)),
          dirty.map((l) => dec(l.highest)),
          dirty.map((l) => l.highestSignature),
        ],
      );
    }
    await client.query("COMMIT");
    return () => {
      for (const settle of outcomes) settle();
    };
  }
}

function adjustColumns(vouchers: readonly AcceptedVoucher[]): unknown[] {
  return [
    vouchers.map((v) => dec(v.channelId)),
    vouchers.map((v) => dec(v.amount)),
    vouchers.map((v) => dec(v.charge)),
    vouchers.map((v) => dec(v.chargedTotal)),
    vouchers.map((v) => v.receipt),
  ];
}

function voucherColumns(vouchers: readonly AcceptedVoucher[]): unknown[] {
  return [
    vouchers.map((v) => dec(v.channelId)),
    vouchers.map((v) => dec(v.amount)),
    vouchers.map((v) => v.signature),
    vouchers.map((v) => dec(v.charge)),
    vouchers.map((v) => dec(v.chargedTotal)),
    vouchers.map((v) => v.receipt),
    vouchers.map((v) => String(v.acceptedAt)),
  ];
}

/** Opens the PostgreSQL {@link PaymentStore} at `options.url`, creating and migrating its schema as needed. */
export async function openPgStore(options: PgStoreOptions): Promise<PgStore> {
  const store = new PgStore(options);
  try {
    await store.migrate();
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  return store;
}
