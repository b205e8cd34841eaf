import type Database from "better-sqlite3";

/**
 * One schema step. Migrations are append-only: a released migration is never edited, a change
 * to the schema is a new entry with the next version.
 */
export interface Migration {
  /** 1-based, consecutive; stored in `PRAGMA user_version` once applied. */
  readonly version: number;
  readonly name: string;
  readonly up: (db: Database.Database) => void;
}

/*
 * Column conventions (see src/store/sqlite.ts, `u256`):
 * - Every bigint (channel ids, amounts, blocks) is TEXT holding 64 lowercase hex digits, zero
 *   padded: uint256 width, so any on-chain value fits, and because the width is fixed, SQLite's
 *   text comparison (BINARY collation) orders them numerically, which the ledger upsert relies
 *   on to keep the maximum voucher amount. INTEGER would overflow at 2^63.
 * - Timestamps are INTEGER Unix milliseconds, small counters INTEGER.
 * - No foreign keys between vouchers/ledgers and channels: a voucher the engine accepted must be
 *   stored even if the watcher's channel row is late or pruned; refusing the write would fail a
 *   request that was already paid for.
 */

/** The schema, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "channels, ledgers, vouchers, cursors",
    up: (db) =>
      db.exec(`
        CREATE TABLE channels (
          channel_id        TEXT PRIMARY KEY,
          payer             TEXT NOT NULL,
          payee             TEXT NOT NULL,
          token             TEXT NOT NULL,
          signer            TEXT NOT NULL,
          deposit           TEXT NOT NULL,
          claimed_on_chain  TEXT NOT NULL,
          withdraw_delay    INTEGER NOT NULL,
          withdraw_ready_at INTEGER NOT NULL,
          status            TEXT NOT NULL CHECK (status IN ('open', 'closed')),
          opened_at_block   TEXT NOT NULL,
          updated_at_block  TEXT NOT NULL
        ) WITHOUT ROWID;

        CREATE TABLE ledgers (
          channel_id        TEXT PRIMARY KEY,
          charged_total     TEXT NOT NULL,
          highest_amount    TEXT NOT NULL,
          highest_signature TEXT,
          claimed_amount    TEXT NOT NULL
        ) WITHOUT ROWID;

        -- WITHOUT ROWID: the primary key is the only access path, so the rows live in the key's
        -- B-tree instead of a rowid table plus a separate unique index (one B-tree write per insert).
        CREATE TABLE vouchers (
          channel_id    TEXT NOT NULL,
          amount        TEXT NOT NULL,
          signature     TEXT NOT NULL,
          charge        TEXT NOT NULL,
          charged_total TEXT NOT NULL,
          receipt       TEXT NOT NULL,
          accepted_at   INTEGER NOT NULL,
          PRIMARY KEY (channel_id, amount)
        ) WITHOUT ROWID;

        CREATE TABLE cursors (
          key   TEXT PRIMARY KEY,
          block TEXT NOT NULL
        ) WITHOUT ROWID;
      `),
  },
  {
    version: 2,
    name: "pending_claims",
    up: (db) =>
      db.exec(`
        CREATE TABLE pending_claims (
          tx_hash    TEXT NOT NULL,
          channel_id TEXT NOT NULL,
          amount     TEXT NOT NULL,
          nonce      INTEGER NOT NULL,
          sent_at    INTEGER NOT NULL,
          PRIMARY KEY (tx_hash, channel_id)
        ) WITHOUT ROWID;
      `),
  },
  {
    version: 3,
    name: "vouchers as an append-only rowid table with a unique (channel_id, amount) index",
    // The WITHOUT ROWID table kept each ~800-byte voucher row in its (channel_id, amount) B-tree,
    // so a batch of vouchers over many channels dirtied one full leaf page per channel and split
    // pages every few rows: more WAL pages written and fsynced per voucher. Rows now append to
    // the rowid table's rightmost leaf and only the small index entries land per channel; the
    // unique index keeps (channel_id, amount) the identity of a voucher (ON CONFLICT, lookups).
    up: (db) =>
      db.exec(`
        CREATE TABLE vouchers_v3 (
          id            INTEGER PRIMARY KEY,
          channel_id    TEXT NOT NULL,
          amount        TEXT NOT NULL,
          signature     TEXT NOT NULL,
          charge        TEXT NOT NULL,
          charged_total TEXT NOT NULL,
          receipt       TEXT NOT NULL,
          accepted_at   INTEGER NOT NULL
        );
        INSERT INTO vouchers_v3 (channel_id, amount, signature, charge, charged_total, receipt, accepted_at)
          SELECT channel_id, amount, signature, charge, charged_total, receipt, accepted_at
          FROM vouchers ORDER BY accepted_at, channel_id, amount;
        DROP TABLE vouchers;
        ALTER TABLE vouchers_v3 RENAME TO vouchers;
        CREATE UNIQUE INDEX vouchers_channel_amount ON vouchers (channel_id, amount);
      `),
  },
  {
    version: 4,
    name: "exact_authorizations",
    // The EIP-3009 authorizations submitted for `exact` payments, by (token, payer, nonce): a
    // replay is refused from here, across restarts, without asking the chain. tx_hash is NULL
    // while the transfer is being settled.
    up: (db) =>
      db.exec(`
        CREATE TABLE exact_authorizations (
          token      TEXT NOT NULL,
          payer      TEXT NOT NULL,
          nonce      TEXT NOT NULL,
          value      TEXT NOT NULL,
          tx_hash    TEXT,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (token, payer, nonce)
        ) WITHOUT ROWID;
      `),
  },
  {
    version: 5,
    name: "voucher_log",
    // The request path's group commits append here instead of writing vouchers and ledgers: a
    // batch of a dozen vouchers over as many channels dirtied a leaf of the (channel_id, amount)
    // index and a ledger page per channel, about 19 WAL pages per commit. Appended rows share the
    // rightmost leaf; the store folds them into vouchers and ledgers in large batches off the
    // request path (a few pages per channel per fold), and on open whatever a crash left here.
    // kind: 0 records a voucher, 1 adjusts its charge (signature and accepted_at NULL).
    up: (db) =>
      db.exec(`
        CREATE TABLE voucher_log (
          id            INTEGER PRIMARY KEY,
          kind          INTEGER NOT NULL CHECK (kind IN (0, 1)),
          channel_id    TEXT NOT NULL,
          amount        TEXT NOT NULL,
          signature     TEXT,
          charge        TEXT NOT NULL,
          charged_total TEXT NOT NULL,
          receipt       TEXT NOT NULL,
          accepted_at   INTEGER
        );
      `),
  },
];

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/**
 * Brings `db` to the last version of `migrations`, applying the missing ones in one IMMEDIATE
 * transaction (all or nothing, and a second process opening the same file waits instead of
 * applying them twice). Idempotent. Returns the versions applied.
 *
 * @throws if the file was written by a newer schema than `migrations` knows: running old code on
 * it could silently misread or drop data.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[] = MIGRATIONS): number[] {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration #${i} has version ${m.version}, expected ${i + 1}`);
  });
  const target = migrations.length;
  const run = db.transaction((): number[] => {
    // Read inside the write transaction: another process may have migrated since we looked.
    const current = db.pragma("user_version", { simple: true }) as number;
    if (current > target) {
      throw new Error(`database schema version ${current} is newer than this code supports (${target})`);
    }
    const applied: number[] = [];
    for (const m of migrations.slice(current)) {
      m.up(db);
      applied.push(m.version);
    }
    // PRAGMA takes no bound parameters; target is a checked integer.
    if (applied.length > 0) db.pragma(`user_version = ${target}`);
    return applied;
  });
  return run.immediate();
}
