import { randomBytes } from "node:crypto";
import pg from "pg";

/** Where the PostgreSQL tests run; unset, they are skipped with this reason printed. */
export const PG_URL_ENV = "PAYCHAN_TEST_PG_URL";
export const PG_SKIP_REASON = `${PG_URL_ENV} is not set (e.g. postgres://postgres@127.0.0.1:5432/test)`;

/** The test database's URL, or undefined when the PostgreSQL tests are to be skipped. */
export function testPgUrl(): string | undefined {
  const url = process.env[PG_URL_ENV];
  return url === undefined || url === "" ? undefined : url;
}

const announced = new Set<string>();

/**
 * Skips the calling suite (printing why) when no test database is configured. Call first in a
 * `before` hook with mocha's context.
 */
export function requirePg(context: Mocha.Context, what: string): string {
  const url = testPgUrl();
  if (url === undefined) {
    if (!announced.has(what)) console.log(`      skipped ${what}: ${PG_SKIP_REASON}`);
    announced.add(what);
    context.skip();
  }
  return url as string;
}

/** A schema of its own in the shared test database: a unique name, and a URL whose connections use it. */
export interface TestSchema {
  readonly name: string;
  readonly url: string;
  /** Drops the schema and everything in it. */
  drop(): Promise<void>;
}

/** Names a fresh schema (created by the store on first open) and gives its URL. */
export function testSchema(baseUrl: string, prefix = "paychan_test"): TestSchema {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString("hex")}`;
  const url = new URL(baseUrl);
  url.searchParams.set("options", `-c search_path=${name}`);
  return {
    name,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(name)} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}
