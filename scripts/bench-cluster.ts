import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import pg from "pg";
import { hardhat } from "viem/chains";
import { decodeHeader, type PaymentRequired } from "../src/protocol/headers";
import { PAYEE_KEY_ENV } from "../src/shared/config";
import { openSqliteStore } from "../src/store/sqlite";
import { freePort, startHardhatNode, type HardhatNode } from "../test/helpers/hardhatNode";
import { startInstance, type Instance } from "../test/helpers/cluster";
import { cpuSecondsOf, openChannels, PAYEE_KEY, PRICE, VoucherSource } from "./bench/http";

/**
 * `npm run bench:cluster`: paid throughput of 1, 2 and 4 `paychan server` processes on one
 * PostgreSQL database, and of one process on SQLite for reference.
 *
 * A local `hardhat node`, `BENCH_CLUSTER_CHANNELS` channels (default 32), and one autocannon per
 * instance from this process, the connections split evenly between the instances: every paid
 * request carries a distinct voucher, pre-signed before the timed run, and the vouchers of every
 * channel go to every instance (the g-th voucher pays channel g mod C), so the instances contend
 * for the same channels' rows as behind a round-robin load balancer. Each run sends a fixed number
 * of requests (`BENCH_CLUSTER_REQUESTS`, default 6,000, after a warm-up of a tenth of it), so none
 * is cut off; then the store is checked: every 200 has its voucher stored, no channel's charged
 * total differs from the sum of its vouchers' charges.
 *
 * Figures: paid requests per second; server CPU per paid request (user + system time of the
 * instances, /proc, summed, per 200): the cost that more instances multiply on a machine with few
 * cores; PostgreSQL commits per voucher (every transaction of the bench's own database during the
 * run, the watchers' included, per 200: below 1 means requests shared commits).
 *
 * The settler is off (`--no-settler`): it is not on the request path. The PostgreSQL server is
 * `PAYCHAN_BENCH_PG_URL`, else `PAYCHAN_TEST_PG_URL`, else postgres://postgres@127.0.0.1:5432/test;
 * the bench creates a database of its own there and drops it at the end.
 *
 * Last stdout line, one JSON object:
 * {"instances":{"1":rps,"2":rps,"4":rps},"sqliteRps":rps,"cpuUsPerPaid":{"1":us,"2":us,"4":us},"doubleCharges":0,"lostVouchers":0}
 */

const knob = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer`);
  return value;
};

const CONNECTIONS = knob("BENCH_CLUSTER_CONNECTIONS", 32);
const REQUESTS = knob("BENCH_CLUSTER_REQUESTS", 6_000);
const CHANNEL_COUNT = knob("BENCH_CLUSTER_CHANNELS", 32);
const CHANNEL_DEPOSIT = 10_000_000_000n;

interface RunResult {
  readonly label: string;
  readonly rps: number;
  readonly ok: number;
  readonly non200: number;
  readonly cpuUsPerPaid: number;
  /** All commits of the bench database during the run, per 200; undefined for SQLite. */
  readonly commitsPerVoucher: number | undefined;
  readonly doubleCharges: number;
  readonly lostVouchers: number;
}

/** What a store holds after a run: vouchers, and channels whose total is not the sum of their charges. */
interface Audit {
  readonly vouchers: number;
  /** Σ over channels of |charged total − Σ charges| / price. */
  readonly mischarged: number;
}

async function startUpstream(): Promise<http.Server> {
  const body = JSON.stringify({ ok: true });
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "application/json", "content-length": body.length }).end(body);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** Sends `requests` paid requests spread over the instances (one autocannon each); seconds and 200s. */
async function load(instances: readonly Instance[], vouchers: VoucherSource, requests: number) {
  const started = performance.now();
  const runs = instances.map((instance, i) => {
    const share = Math.floor(requests / instances.length) + (i < requests % instances.length ? 1 : 0);
    const run = autocannon({
      url: instance.url,
      connections: Math.max(1, Math.floor(CONNECTIONS / instances.length)),
      amount: share,
      timeout: 30,
      requests: [
        {
          method: "GET",
          path: "/paid",
          setupRequest: (req) => ({ ...req, headers: { ...req.headers, "payment-signature": vouchers.take() } }),
        },
      ],
    });
    return new Promise<autocannon.Result>((resolve, reject) => {
      run.once("done", resolve);
      run.once("error", reject);
    });
  });
  const results = await Promise.all(runs);
  const seconds = (performance.now() - started) / 1000;
  const ok = results.reduce(
    (n, r) => n + ((r.statusCodeStats as Record<string, { count: number } | undefined>)["200"]?.count ?? 0),
    0,
  );
  const total = results.reduce((n, r) => n + r.requests.total + r.errors + r.timeouts, 0);
  return { seconds, ok, non200: total - ok };
}

async function pgAudit(url: string): Promise<Audit> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string; off: string }>(
      `SELECT (SELECT count(*) FROM vouchers) AS n,
              coalesce((SELECT sum(abs(l.charged_total - coalesce(v.s, 0)))
                        FROM ledgers l LEFT JOIN (SELECT channel_id, sum(charge) AS s FROM vouchers GROUP BY channel_id) v
                        USING (channel_id)), 0) AS off`,
    );
    return { vouchers: Number(rows[0].n), mischarged: Number(BigInt(rows[0].off) / PRICE) };
  } finally {
    await client.end();
  }
}

async function sqliteAudit(file: string): Promise<Audit> {
  const store = openSqliteStore({ path: file });
  try {
    let vouchers = 0;
    let off = 0n;
    for (const ledger of store.loadLedgers()) {
      const amounts = store.loadVoucherAmounts(ledger.channelId);
      vouchers += amounts.length;
      let sum = 0n;
      for (const amount of amounts) sum += store.findVoucher(ledger.channelId, amount)?.charge ?? 0n;
      off += ledger.chargedTotal > sum ? ledger.chargedTotal - sum : sum - ledger.chargedTotal;
    }
    return { vouchers, mischarged: Number(off / PRICE) };
  } finally {
    await store.close();
  }
}

async function commitsOf(admin: pg.Client, database: string): Promise<number> {
  const { rows } = await admin.query<{ c: string }>(
    "SELECT xact_commit AS c FROM pg_stat_database WHERE datname = $1",
    [database],
  );
  return Number(rows[0]?.c ?? 0);
}

async function main(): Promise<void> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const adminUrl =
    process.env.PAYCHAN_BENCH_PG_URL ?? process.env.PAYCHAN_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const database = `paychan_bench_${process.pid}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${database}`;

  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-bench-cluster-"));
  let node: HardhatNode | undefined;
  let upstream: http.Server | undefined;
  let instances: Instance[] = [];
  const results: RunResult[] = [];
  try {
    log(`paychan bench:cluster — ${os.availableParallelism?.() ?? os.cpus().length} cores, ${process.version}`);
    log(
      `  ${REQUESTS} paid requests per run (after ${REQUESTS / 10} warm-up), ${CONNECTIONS} connections, ${CHANNEL_COUNT} channels`,
    );
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
    const { channels } = await openChannels(node, CHANNEL_COUNT, CHANNEL_DEPOSIT);
    upstream = await startUpstream();
    const base = {
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      network: "localhost",
      rpcUrl: node.url,
      contract,
      token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
      routes: { "GET /paid": "$0.001" },
      minDeposit: "$1",
      minWithdrawDelay: 3600,
      pollIntervalMs: 1_000,
    };
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, PAYCHAN_LOG_LEVEL: "warn" };

    const runs: { label: string; count: number; database: Record<string, unknown> }[] = [
      { label: "sqlite", count: 1, database: { path: path.join(dir, "sqlite.db") } },
      ...[1, 2, 4].map((count) => {
        const url = new URL(dbUrl);
        url.searchParams.set("options", `-c search_path=cluster_${count}`);
        return { label: String(count), count, database: { url: url.toString() } };
      }),
    ];
    for (const run of runs) {
      const config = { ...base, database: run.database };
      instances = [];
      // One at a time: the first migrates the schema.
      for (let i = 0; i < run.count; i++) {
        instances.push(
          await startInstance(i, path.join(dir, `paychan-${run.label}`), config, await freePort(), env, [
            "--no-settler",
          ]),
        );
      }
      const offer = await fetch(`${instances[0].url}/paid`);
      await offer.arrayBuffer();
      const required = decodeHeader<PaymentRequired>(offer.headers.get("payment-required") ?? "");
      const vouchers = new VoucherSource(channels, required.accepts[0], hardhat.id, contract);
      // The warm-up also has each instance read the channels from the chain on first use.
      const warmupCount = Math.max(1, Math.floor(REQUESTS / 10));
      vouchers.prepare(warmupCount + REQUESTS);
      const warm = await load(instances, vouchers, warmupCount);

      const commitsBefore = run.label === "sqlite" ? 0 : await commitsOf(admin, database);
      const cpuBefore = instances.map((i) => cpuSecondsOf(i.pid));
      const measured = await load(instances, vouchers, REQUESTS);
      const cpu = instances.reduce((sum, inst, i) => sum + cpuSecondsOf(inst.pid) - cpuBefore[i], 0);
      // pg_stat counters are flushed by each backend within a second of its transactions.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const commits = run.label === "sqlite" ? undefined : (await commitsOf(admin, database)) - commitsBefore;
      for (const instance of instances) await instance.kill("SIGTERM");
      instances = [];

      const audit =
        run.label === "sqlite"
          ? await sqliteAudit(path.join(dir, "sqlite.db"))
          : await pgAudit(String(run.database.url));
      const acknowledged = warm.ok + measured.ok;
      const result: RunResult = {
        label: run.label,
        rps: Math.round(measured.ok / measured.seconds),
        ok: measured.ok,
        non200: warm.non200 + measured.non200,
        cpuUsPerPaid: Math.round((cpu / Math.max(1, measured.ok)) * 1e6),
        commitsPerVoucher:
          commits === undefined ? undefined : Math.round((commits / Math.max(1, measured.ok)) * 1000) / 1000,
        doubleCharges: Math.max(0, audit.vouchers - acknowledged) + audit.mischarged,
        lostVouchers: Math.max(0, acknowledged - audit.vouchers),
      };
      results.push(result);
      log(
        `  ${run.label === "sqlite" ? "SQLite, 1 instance " : `PostgreSQL, ${run.label} inst.`}: ${result.rps} paid req/s, ` +
          `${result.cpuUsPerPaid} µs server CPU per paid request` +
          (result.commitsPerVoucher === undefined ? "" : `, ${result.commitsPerVoucher} commits per voucher`) +
          `; ${result.non200} not 200, ${result.doubleCharges} double charges, ${result.lostVouchers} lost vouchers`,
      );
    }
  } finally {
    for (const instance of instances) await instance.kill().catch(() => undefined);
    if (upstream) {
      upstream.closeAllConnections();
      await new Promise<void>((resolve) => upstream?.close(() => resolve()));
    }
    await node?.stop();
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(database)} WITH (FORCE)`).catch(() => undefined);
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
  const byLabel = (label: string) => results.find((r) => r.label === label) as RunResult;
  const failures = results.reduce((n, r) => n + r.non200, 0);
  process.stdout.write(
    JSON.stringify({
      instances: { "1": byLabel("1").rps, "2": byLabel("2").rps, "4": byLabel("4").rps },
      sqliteRps: byLabel("sqlite").rps,
      cpuUsPerPaid: { "1": byLabel("1").cpuUsPerPaid, "2": byLabel("2").cpuUsPerPaid, "4": byLabel("4").cpuUsPerPaid },
      doubleCharges: results.reduce((n, r) => n + r.doubleCharges, 0),
      lostVouchers: results.reduce((n, r) => n + r.lostVouchers, 0),
    }) + "\n",
  );
  if (failures > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
