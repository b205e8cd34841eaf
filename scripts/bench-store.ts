import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { DEFAULT_WAL_AUTOCHECKPOINT_PAGES, openSqliteStore } from "../src/store/sqlite";

/**
 * Throughput and latency of SqliteStore.recordVoucher, with fsync on and off.
 *
 *   node -r ./bin/register.js scripts/bench-store.ts [--seconds 3] [--dir /path]
 *     [--concurrency 32,256] [--cpu-us 0,50] [--rates 1000,5000] [--checkpoint 256,1000]
 *
 * - Closed loop ("32 writers"): each of C writers awaits one recordVoucher and starts the next, on
 *   its own channel, like C in-flight paid requests. It measures peak throughput; latency there is
 *   mostly queueing (about C / throughput).
 * - Open loop ("5000/s"): writes are issued at a fixed rate over 256 channels whatever the
 *   completions, which is what latency at a given load means.
 * `--cpu-us` burns that much CPU before each write to stand in for signature verification (the
 * commit runs on the event loop, so they share it). `--checkpoint` is walAutocheckpointPages.
 * "loop p99" is the event-loop delay. Channel ids are 2^184-1 downwards, so every write touches a
 * different leaf page, the worst case for write amplification.
 * Prints the disk's raw fsync cost, a table, then one JSON line.
 */

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const SECONDS = Number(arg("seconds", "3"));
const DIR = arg("dir", os.tmpdir());
const CPU_US = arg("cpu-us", "0,50").split(",").map(Number);
const CONCURRENCY = arg("concurrency", "32,256").split(",").map(Number);
const RATES = arg("rates", "1000,5000").split(",").filter(Boolean).map(Number);
const CHECKPOINT = arg("checkpoint", String(DEFAULT_WAL_AUTOCHECKPOINT_PAGES)).split(",").map(Number);

/** The i-th value of a sorted sample at quantile q. */
function quantile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function spin(us: number): void {
  if (us <= 0) return;
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end);
}

/** The raw cost of one small durable write on this disk, which bounds commits per second. */
function probeFsync(dir: string): { p50: number; p99: number } {
  const file = path.join(dir, `fsync-probe-${process.pid}`);
  const fd = fs.openSync(file, "w");
  const page = Buffer.alloc(4096, 7);
  const samples = new Float64Array(2000);
  try {
    for (let i = 0; i < samples.length; i++) {
      const t0 = process.hrtime.bigint();
      fs.writeSync(fd, page, 0, page.length, (i % 64) * page.length);
      fs.fdatasyncSync(fd);
      samples[i] = Number(process.hrtime.bigint() - t0) / 1000;
    }
  } finally {
    fs.closeSync(fd);
    fs.unlinkSync(file);
  }
  samples.sort();
  return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

interface Scenario {
  durable: boolean;
  /** Closed loop: this many writers. */
  concurrency?: number;
  /** Open loop: this many writes per second. */
  rate?: number;
  cpuUs: number;
  checkpoint: number;
}

interface Row extends Scenario {
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  avgBatch: number;
  loopP99Ms: number;
}

const SIGNATURE = `0x${"ab".repeat(65)}` as const;
const RECEIPT = "r".repeat(160); // about the size of an encoded signed receipt

async function run(scenario: Scenario): Promise<Row> {
  const { durable, concurrency, rate, cpuUs, checkpoint } = scenario;
  const dir = fs.mkdtempSync(path.join(DIR, "paychan-bench-"));
  const store = openSqliteStore({ path: path.join(dir, "store.db"), durable, walAutocheckpointPages: checkpoint });
  const latencies: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  let stop = false;
  let measuring = false;

  const channels = concurrency ?? 256;
  const nextAmount = new Array<bigint>(channels).fill(1000n);
  /** One paid request on channel `c`: verification stand-in, then the durable write. */
  const request = async (c: number): Promise<void> => {
    spin(cpuUs);
    const amount = nextAmount[c];
    nextAmount[c] += 1000n;
    const t0 = process.hrtime.bigint();
    await store.recordVoucher({
      channelId: (1n << 184n) - 1n - BigInt(c),
      amount,
      signature: SIGNATURE,
      charge: 1000n,
      chargedTotal: amount,
      receipt: RECEIPT,
      acceptedAt: Date.now(),
    });
    if (measuring) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
  };

  let writers: Promise<void>[];
  if (rate === undefined) {
    writers = Array.from({ length: channels }, async (_, c) => {
      while (!stop) await request(c);
    });
  } else {
    // Issue what is due, then yield with setImmediate (timers would release 1 ms bursts).
    writers = [
      (async () => {
        const inflight = new Set<Promise<void>>();
        const start = process.hrtime.bigint();
        for (let issued = 0; !stop; await new Promise((r) => setImmediate(r))) {
          const due = Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * rate);
          for (; issued < due; issued++) {
            const p = request(issued % channels).finally(() => inflight.delete(p));
            inflight.add(p);
          }
        }
        await Promise.all(inflight);
      })(),
    ];
  }
  await new Promise((r) => setTimeout(r, 300)); // warm-up: statement caches, WAL growth
  const before = store.stats();
  measuring = true;
  loop.enable();
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  loop.disable();
  const after = store.stats();
  stop = true;
  await Promise.all(writers);
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const sorted = Float64Array.from(latencies).sort();
  return {
    ...scenario,
    writesPerSec: Math.round(latencies.length / elapsed),
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1],
    avgBatch: (after.writes - before.writes) / Math.max(1, after.batches - before.batches),
    loopP99Ms: loop.percentile(99) / 1e6,
  };
}

async function main(): Promise<void> {
  const fsync = probeFsync(DIR);
  console.log(
    `${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(2)} (other processes skew these figures), ` +
      `${DIR}: 4 KiB write+fdatasync p50 ${fsync.p50.toFixed(0)} us, p99 ${fsync.p99.toFixed(0)} us`,
  );
  const scenarios: Scenario[] = [];
  for (const checkpoint of CHECKPOINT) {
    for (const cpuUs of CPU_US) {
      for (const durable of [true, false]) {
        for (const concurrency of CONCURRENCY) scenarios.push({ durable, concurrency, cpuUs, checkpoint });
        for (const rate of RATES) scenarios.push({ durable, rate, cpuUs, checkpoint });
      }
    }
  }
  const rows: Row[] = [];
  for (const scenario of scenarios) rows.push(await run(scenario));
  const f = (x: number, d = 2): string => x.toFixed(d);
  console.log(
    "fsync  ckpt  load         cpu us  writes/s   p50 ms   p99 ms   max ms  avg batch  loop p99 ms\n" +
      rows
        .map((r) =>
          [
            (r.durable ? "on" : "off").padEnd(5),
            String(r.checkpoint).padStart(5),
            (r.rate === undefined ? `${r.concurrency} writers` : `${r.rate}/s`).padEnd(12),
            String(r.cpuUs).padStart(7),
            String(r.writesPerSec).padStart(9),
            f(r.p50Ms).padStart(8),
            f(r.p99Ms).padStart(8),
            f(r.maxMs).padStart(8),
            f(r.avgBatch, 1).padStart(10),
            f(r.loopP99Ms).padStart(12),
          ].join(" "),
        )
        .join("\n"),
  );
  console.log(JSON.stringify({ fsyncUs: fsync, rows }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
