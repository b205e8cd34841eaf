import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { startHardhatNode, type HardhatNode } from "../test/helpers/hardhatNode";
import { measurePaidRequestGas, type PaidRequestGas } from "./bench/gas";
import { measureFsyncLatency } from "./bench/fsync";
import { runHttpBench, type HttpResults } from "./bench/http";
import { lastJsonLine, REPO_ROOT, runChild, TS_REGISTER } from "./bench/proc";

/**
 * `npm run bench`: paychan's performance figures in one command, in one process tree.
 *
 *  1. verification: scripts/bench-verify.ts in a child process (its JSON line): paychan's engine
 *     beside x402's batch-settlement scheme (@x402/evm) on the same vouchers, and their ratio;
 *  2. HTTP: the reverse proxy (child process, SQLite in a temp dir, durable) in front of a
 *     minimal upstream, autocannon from this process, 32 connections: a free route vs a paid
 *     route with a distinct pre-signed voucher per request; rounds interleaved, medians reported;
 *     afterwards the stores must hold exactly one charge per 200;
 *  3. gas: scripts/bench-gas.ts under `hardhat run` (batch claim per channel at 1/10/100 and its
 *     calldata), plus gas per paid request for 1,000 requests over 10 channels on the local node;
 *  4. durability: paid requests per second with fsync on (durable, off the event loop) and off,
 *     same setup; and, for the table only, with SQLite's fsync inside COMMIT on the event loop.
 *
 * Prints a table, writes bench/results.json, and prints one JSON line as the last stdout line.
 *
 * Knobs (environment): BENCH_HTTP_SECONDS (10), BENCH_WARMUP_SECONDS (2), BENCH_ROUNDS (3),
 * BENCH_CONNECTIONS (32), BENCH_LATENCY_SECONDS (5), BENCH_LATENCY_RATE_FRACTION (0.5: the fixed
 * offered rate of the latency runs as a fraction of the paid saturation rate), BENCH_SKIP (comma
 * list of verify,gas,http), BENCH_CPU_PROF (a directory: the server children write V8 CPU profiles
 * there), BENCH_HTTP_QUICK=1 (the durable server's free and paid runs and the cryptography timing
 * only: for comparing one change with another in about a minute; see runHttpBench's `quick`).
 */

const env = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};

interface VerifyJson {
  engineVerifiesPerSec: number;
  nativeRecoverPerSec: number;
  viemVerifyTypedDataPerSec: number;
  x402BatchSettlementVerifiesPerSec: number;
  engineOverX402BatchSettlement: number;
}

interface GasJson {
  claimBatchGasPerChannel: { "1": number; "10": number; "100": number };
  claimBatchCalldataBytesPerChannel: number;
}

const n = (x: number) => Math.round(x).toLocaleString("en-US");
const ms = (x: { p50Ms: number; p99Ms: number }) => `${x.p50Ms.toFixed(3)} / ${x.p99Ms.toFixed(3)}`;

/** The table rows of the fixed-rate latency runs (none in quick mode). */
function latencyRows(http: HttpResults): [string, string, string][] {
  return [
    [
      "http: latency runs: fixed offered rate, req/s",
      n(http.latencyRate),
      `${process.env.BENCH_LATENCY_RATE_FRACTION ?? 0.5} × paid saturation req/s`,
    ],
    [`http: at ${n(http.latencyRate)} req/s unpaid p50 / p99 ms`, ms(http.atRate.unpaid), ""],
    [`http: at ${n(http.latencyRate)} req/s paid p50 / p99 ms`, ms(http.atRate.paid), ""],
    [`http: added p50 ms (paid − unpaid) at ${n(http.latencyRate)} req/s`, http.p50AddedMs.toFixed(3), ""],
    [
      `http: added p99 ms (paid − unpaid) at ${n(http.latencyRate)} req/s`,
      http.p99AddedMs.toFixed(3),
      http.p99AddedMs < 0
        ? "≤ 0.3 unclear: free p99 above paid p99 (noise)"
        : http.p99AddedMs <= 0.3
          ? "≤ 0.3 met"
          : "≤ 0.3 MISSED",
    ],
  ];
}

async function main(): Promise<void> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const skip = new Set((process.env.BENCH_SKIP ?? "").split(",").filter(Boolean));
  const started = performance.now();
  const machine = {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpu: os.cpus()[0]?.model ?? "unknown",
    node: process.version,
    loadAverageBefore: Math.round(os.loadavg()[0] * 100) / 100,
  };
  log(`paychan bench — node ${machine.node}, ${machine.cpu} x${machine.nproc}, load ${machine.loadAverageBefore}`);

  let verify: VerifyJson = {
    engineVerifiesPerSec: 0,
    nativeRecoverPerSec: 0,
    viemVerifyTypedDataPerSec: 0,
    x402BatchSettlementVerifiesPerSec: 0,
    engineOverX402BatchSettlement: 0,
  };
  if (!skip.has("verify")) {
    log("1/4 verification (scripts/bench-verify.ts) ...");
    const output = await runChild(process.execPath, [
      "-r",
      TS_REGISTER,
      path.join(REPO_ROOT, "scripts", "bench-verify.ts"),
    ]);
    verify = lastJsonLine<VerifyJson>("bench-verify", output);
    // Its table too: it has the receipt signing rate, the other secp256k1 operation of a paid request.
    for (const line of output.stdout.trim().split("\n").slice(0, -1)) log(line ? `    ${line}` : "");
  }

  let gas: GasJson = { claimBatchGasPerChannel: { "1": 0, "10": 0, "100": 0 }, claimBatchCalldataBytesPerChannel: 0 };
  if (!skip.has("gas")) {
    log("2/4 gas (npx hardhat run scripts/bench-gas.ts) ...");
    gas = lastJsonLine<GasJson>("bench-gas", await runChild("npx", ["hardhat", "run", "scripts/bench-gas.ts"]));
  }

  const fsyncLatency = measureFsyncLatency();
  log(`    fsync of a 4 KiB append in ${os.tmpdir()}: p50 ${fsyncLatency.p50Ms} ms, p99 ${fsyncLatency.p99Ms} ms`);
  let http: HttpResults | undefined;
  let paidGas: PaidRequestGas | undefined;
  let node: HardhatNode | undefined;
  try {
    log("3/4 local chain (hardhat node, contracts + mock USDC) ...");
    node = await startHardhatNode({ deploy: true });
    if (!skip.has("http")) {
      log("    HTTP: proxy child process (SQLite, group commit) + minimal upstream; autocannon here");
      http = await runHttpBench(node, {
        connections: env("BENCH_CONNECTIONS", 32),
        rounds: env("BENCH_ROUNDS", 3),
        warmupSeconds: env("BENCH_WARMUP_SECONDS", 2),
        seconds: env("BENCH_HTTP_SECONDS", 10),
        latencySeconds: env("BENCH_LATENCY_SECONDS", 5),
        latencyRateFraction: env("BENCH_LATENCY_RATE_FRACTION", 0.5),
        ...(process.env.BENCH_CPU_PROF ? { cpuProfDir: path.resolve(process.env.BENCH_CPU_PROF) } : {}),
        quick: process.env.BENCH_HTTP_QUICK === "1",
        log,
      });
    }
    if (!skip.has("gas")) {
      log("4/4 gas per paid request: 10 channels opened, 100 vouchers each, one claimBatch ...");
      paidGas = await measurePaidRequestGas(node);
    }
  } finally {
    await node?.stop();
  }

  const summary = {
    verify: {
      engineVerifiesPerSec: verify.engineVerifiesPerSec,
      nativeRecoverPerSec: verify.nativeRecoverPerSec,
      viemVerifyTypedDataPerSec: verify.viemVerifyTypedDataPerSec,
      x402BatchSettlementVerifiesPerSec: verify.x402BatchSettlementVerifiesPerSec,
      engineOverX402BatchSettlement: verify.engineOverX402BatchSettlement,
    },
    http: {
      unpaidRps: http?.unpaidRps ?? 0,
      paidRps: http?.paidRps ?? 0,
      p50AddedMs: http?.p50AddedMs ?? 0,
      p99AddedMs: http?.p99AddedMs ?? 0,
      overheadOverCrypto: http?.overheadOverCrypto ?? 0,
    },
    gas: {
      claimBatchGasPerChannel: gas.claimBatchGasPerChannel,
      claimBatchCalldataBytesPerChannel: gas.claimBatchCalldataBytesPerChannel,
      claimGasPerPaidRequest: paidGas?.claimGasPerPaidRequest ?? 0,
      totalGasPerPaidRequest: paidGas?.totalGasPerPaidRequest ?? 0,
    },
    durability: { fsyncRps: http?.paidRps ?? 0, noFsyncRps: http?.noFsyncPaidRps ?? 0 },
  };

  const rows: [string, string, string][] = [
    ["verify: engine verifies/s (one core)", n(verify.engineVerifiesPerSec), ""],
    ["verify: libsecp256k1 ecdsaRecover/s", n(verify.nativeRecoverPerSec), ""],
    ["verify: viem verifyTypedData/s", n(verify.viemVerifyTypedDataPerSec), ""],
    [
      "verify: x402 batch-settlement verifies/s (one core)",
      n(verify.x402BatchSettlementVerifiesPerSec),
      "BatchSettlementEvmScheme, in-memory storage",
    ],
    ["verify: engine / x402 batch-settlement", `${verify.engineOverX402BatchSettlement.toFixed(1)} ×`, "same vouchers"],
  ];
  const accountingOk = http ? http.accounting.every((a) => a.ok) : true;
  if (http) {
    const c = env("BENCH_CONNECTIONS", 32);
    rows.push(
      [`http: unpaid (free route) req/s, ${c} conns`, n(http.unpaidRps), ""],
      ["http: paid req/s (fsync)", n(http.paidRps), ""],
      [
        "http: paid / unpaid throughput",
        http.paidOverUnpaid.toFixed(3),
        http.paidOverUnpaid >= 0.6 ? "≥ 0.6 met" : "≥ 0.6 MISSED",
      ],
      [
        "http: server CPU µs/request: free / paid / no fsync / fsync in COMMIT",
        `${http.serverCpuUsPerRequest.unpaid} / ${http.serverCpuUsPerRequest.paid} / ${http.serverCpuUsPerRequest.paidNoFsync} / ${http.serverCpuUsPerRequest.paidCommitFsync}`,
        "",
      ],
      [
        "http: server CPU µs: ecdsaRecover / receipt sign",
        `${http.cryptoUs.recover} / ${http.cryptoUs.receiptSign}`,
        "timed in the server process after each round",
      ],
      [
        "http: (paid − free CPU µs) / (recover + sign µs)",
        http.overheadOverCrypto.toFixed(2),
        http.overheadOverCrypto <= 1.5 ? "≤ 1.5 met" : "≤ 1.5 MISSED",
      ],
      [`http: saturation (${c} conns) unpaid p50 / p99 ms`, `${ms(http.unpaid)}`, ""],
      [`http: saturation (${c} conns) paid p50 / p99 ms`, `${ms(http.paid)}`, ""],
      [`http: saturation (${c} conns) added p50 / p99 ms`, `${ms(http.saturationAdded)}`, "queueing, not a target"],
      ...(http.rateRuns.length === 0 ? [] : latencyRows(http)),
      ...http.accounting.map((a): [string, string, string] => [
        `http: charges in the ${a.server} store`,
        `${a.vouchersStored} vouchers, ${a.chargedTotal}`,
        `${a.ok ? "OK" : "MISMATCH"}: ${n(a.paid200)} paid 200s × 1000`,
      ]),
    );
  }
  rows.push(
    ["gas: claimBatch per channel, batch of 1", n(gas.claimBatchGasPerChannel["1"]), ""],
    ["gas: claimBatch per channel, batch of 10", n(gas.claimBatchGasPerChannel["10"]), ""],
    ["gas: claimBatch per channel, batch of 100", n(gas.claimBatchGasPerChannel["100"]), ""],
    ["gas: claimBatch calldata bytes per channel", String(gas.claimBatchCalldataBytesPerChannel), ""],
  );
  if (paidGas) {
    rows.push(
      [
        "gas: claim per paid request (1,000 over 10 ch.)",
        n(paidGas.claimGasPerPaidRequest),
        paidGas.claimGasPerPaidRequest <= 200 ? "≤ 200 met" : "≤ 200 MISSED",
      ],
      [
        "gas: an open before the measured ones (not counted)",
        n(paidGas.priorOpenGas),
        // A fresh contract's first open also creates the seller's route and its first token balance.
        paidGas.priorOpenGas > Math.max(...paidGas.openGasEach) + 50_000
          ? "includes the seller's one-time route setup"
          : "route already set up (by the HTTP runs)",
      ],
      [
        "gas: measured opens, min – max (a later buyer's)",
        `${n(Math.min(...paidGas.openGasEach))} – ${n(Math.max(...paidGas.openGasEach))}`,
        "",
      ],
      [
        "gas: total per paid request (10 opens + claim)",
        n(paidGas.totalGasPerPaidRequest),
        paidGas.totalGasPerPaidRequest <= 1_200 ? "≤ 1,200 met" : "≤ 1,200 MISSED",
      ],
    );
  }
  if (http && http.noFsyncPaidRps > 0) {
    rows.push(
      ["durability: paid req/s, fsync on (durable)", n(http.paidRps), ""],
      [
        "durability: paid req/s, fsync off",
        n(http.noFsyncPaidRps),
        `fsync costs ${((1 - http.paidRps / http.noFsyncPaidRps) * 100).toFixed(0)} %`,
      ],
      [
        "durability: paid req/s, fsync inside COMMIT (event loop)",
        n(http.commitFsyncPaidRps),
        `${((1 - http.commitFsyncPaidRps / http.noFsyncPaidRps) * 100).toFixed(0)} % below fsync off`,
      ],
      ["durability: fsync probe (4 KiB append) p50 / p99 ms", `${fsyncLatency.p50Ms} / ${fsyncLatency.p99Ms}`, ""],
    );
  }
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length)));
  log("");
  log(`${"figure".padEnd(widths[0])}  ${"value".padStart(widths[1])}  target`);
  log(`${"-".repeat(widths[0])}  ${"-".repeat(widths[1])}  ${"-".repeat(Math.max(6, widths[2]))}`);
  for (const [a, b, c] of rows) log(`${a.padEnd(widths[0])}  ${b.padStart(widths[1])}  ${c}`);
  log("");
  log(`total ${((performance.now() - started) / 1000).toFixed(0)} s; load average after ${os.loadavg()[0].toFixed(2)}`);

  const resultsDir = path.join(REPO_ROOT, "bench");
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    path.join(resultsDir, "results.json"),
    `${JSON.stringify({ machine, summary, fsyncLatency, http, paidGas, gasBench: gas, verifyBench: verify, at: new Date().toISOString() }, null, 2)}\n`,
  );
  log(`wrote bench/results.json`);
  if (!accountingOk) process.exitCode = 1;
  log(JSON.stringify(summary));
}

main().then(
  () => setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref(),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
