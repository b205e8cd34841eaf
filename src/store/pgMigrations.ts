import { escapeIdentifier, type PoolClient } from "pg";

/** One PostgreSQL schema step; append-only like the SQLite migrations (src/store/migrations.ts). */
export interface PgMigration {
  /** 1-based, consecutive; recorded in `paychan_migrations` once applied. */
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/*
 * Column conventions: every bigint (channel ids, amounts, blocks) is NUMERIC(78, 0), exact for
 * any uint256 and ordered numerically, so the ledger can keep a GREATEST in SQL; timestamps are
 * BIGINT Unix milliseconds. Tables live in the connection's current schema (the first of its
 * search_path), so one database can hold several independent stores.
 */

/** The schema, in order. */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: "channels, ledgers, vouchers, cursors, pending_claims, leases",
    sql: `
      CREATE TABLE channels (
        channel_id        NUMERIC(78, 0) PRIMARY KEY,
        payer             TEXT NOT NULL,
        payee             TEXT NOT NULL,
        token             TEXT NOT NULL,
        signer            TEXT NOT NULL,
        deposit           NUMERIC(78, 0) NOT NULL,
        claimed_on_chain  NUMERIC(78, 0) NOT NULL,
        withdraw_delay    BIGINT NOT NULL,
        withdraw_ready_at BIGINT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('open', 'closed')),
        opened_at_block   NUMERIC(78, 0) NOT NULL,
        updated_at_block  NUMERIC(78, 0) NOT NULL
      );
      -- The row lock of a channel's ledger serializes every charge on that channel across
      -- instances (see docs/scaling.md).
      CREATE TABLE ledgers (
        channel_id        NUMERIC(78, 0) PRIMARY KEY,
        charged_total     NUMERIC(78, 0) NOT NULL,
        highest_amount    NUMERIC(78, 0) NOT NULL,
        highest_signature TEXT,
        claimed_amount    NUMERIC(78, 0) NOT NULL
      );
      CREATE TABLE vouchers (
        channel_id    NUMERIC(78, 0) NOT NULL,
        amount        NUMERIC(78, 0) NOT NULL,
        signature     TEXT NOT NULL,
        charge        NUMERIC(78, 0) NOT NULL,
        charged_total NUMERIC(78, 0) NOT NULL,
        receipt       TEXT NOT NULL,
        accepted_at   BIGINT NOT NULL,
        PRIMARY KEY (channel_id, amount)
      );
      CREATE TABLE cursors (
        key   TEXT PRIMARY KEY,
        block NUMERIC(78, 0) NOT NULL
      );
      CREATE TABLE pending_claims (
        tx_hash    TEXT NOT NULL,
        channel_id NUMERIC(78, 0) NOT NULL,
        amount     NUMERIC(78, 0) NOT NULL,
        nonce      BIGINT NOT NULL,
        sent_at    BIGINT NOT NULL,
        PRIMARY KEY (tx_hash, channel_id)
      );
      -- Duties exactly one instance performs (the settler and its watcher), by expiring lease.
      CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "exact_authorizations",
    // The EIP-3009 authorizations submitted for `exact` payments, by (token, payer, nonce), as in
    // the SQLite store's migration 4: a replay is refused from here, by any instance, without
    // asking the chain. tx_hash is NULL while the transfer is being settled.
    sql: `
      CREATE TABLE exact_authorizations (
        token      TEXT NOT NULL,
        payer      TEXT NOT NULL,
        nonce      TEXT NOT NULL,
        value      NUMERIC(78, 0) NOT NULL,
        tx_hash    TEXT,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (token, payer, nonce)
      );
    `,
  },
];

/**
 * Creates the connection's schema (the first of its search_path) if missing and brings it to the
 * last version, in one transaction holding an advisory lock: instances starting together wait for
 * each other instead of applying a step twice. Returns the versions applied.
 *
 * @throws if the schema was written by newer code than `migrations` knows.
 */
export async function migratePg(
  client: PoolClient,
  migrations: readonly PgMigration[] = PG_MIGRATIONS,
): Promise<number[]> {
  // The schema the tables go to: the first of the search_path, or with the default path
  // ("$user", public) the first that exists, as PostgreSQL picks it.
  const { rows: names } = await client.query<{ schema: string }>(
    `SELECT CASE WHEN s = '$user' THEN coalesce(current_schema(), 'public') ELSE s END AS schema
     FROM trim(both '"' from trim(split_part(current_setting('search_path'), ',', 1))) AS s`,
  );
  const schema = names[0].schema;
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration #${i} has version ${m.version}, expected ${i + 1}`);
  });
  await client.query("BEGIN");
  try {
    // Keyed by the schema's name, so instances starting together on an empty database also wait
    // for each other to create the schema.
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1 || ':paychan-migrations'))", [schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${escapeIdentifier(schema)}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS paychan_migrations (
         version    INTEGER PRIMARY KEY,
         name       TEXT NOT NULL,
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
       )`,
    );
    const { rows } = await client.query<{ v: number | null }>("SELECT max(version) AS v FROM paychan_migrations");
    const current = rows[0].v ?? 0;
    if (current > migrations.length) {
      throw new Error(`database schema version ${current} is newer than this code supports (${migrations.length})`);
    }
    const applied: number[] = [];
    for (const m of migrations.slice(current)) {
      await client.query(m.sql);
      await client.query("INSERT INTO paychan_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
    return applied;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}
