import http from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { randomBytes } from "node:crypto";
import secp256k1 from "secp256k1";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";

/**
 * Benchmark child process: a minimal upstream API (node:http, small JSON body) and the paychan
 * reverse proxy in front of it, in one process of its own so the load generator (the parent)
 * does not share its event loop. Driven over IPC by scripts/bench/http.ts:
 *
 *   env BENCH_SERVER_CONFIG = path of a paychan config file (its upstream is replaced by ours)
 *   → {type:"ready", port}
 *   ← {type:"waitChannels", ids: string[]}    → {type:"channelsReady"}
 *   ← {type:"ledgers"}                       → {type:"ledgers", chargedTotal: string, vouchers: number}
 *   ← {type:"stats"}                         → {type:"stats", batches, writes, fsync, loopP50Ms, loopP99Ms, loopMaxMs}
 *        (group commits and writes so far; the WAL fsync durations so far, as the cumulative
 *        buckets of paychan_store_fsync_seconds; event-loop delay beyond the 10 ms sampling
 *        period, since the previous "stats")
 *   ← {type:"crypto"}                        → {type:"crypto", recoverUs, receiptSignUs}
 *        (CPU µs of one libsecp256k1 ecdsaRecover and of one ReceiptSigner.sign with this server's
 *        receipt signer: the cryptography a paid request cannot do without, timed here, in the
 *        server's own process between the load runs)
 *   ← {type:"stop"}                          → exits 0 once the server is stopped
 */

const BODY = JSON.stringify({ ok: true, city: "Lisbon", tempC: 19 });

async function startUpstream(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) });
    res.end(BODY);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

type Message =
  | { type: "waitChannels"; ids: string[] }
  | { type: "ledgers" }
  | { type: "stats" }
  | { type: "crypto" }
  | { type: "stop" };

/** CPU µs per call of `step` (user + system of this process), over about `ms` of calls. */
function cpuUsPerCall(ms: number, step: (i: number) => void): number {
  const cpuStart = process.cpuUsage();
  const end = performance.now() + ms;
  let calls = 0;
  do for (let j = 0; j < 32; j++) step(calls++);
  while (performance.now() < end);
  const cpu = process.cpuUsage(cpuStart);
  return (cpu.user + cpu.system) / calls;
}

/** The median, over three interleaved runs each, of the CPU µs of a recovery and of a receipt signature. */
function measureCrypto(server: PaymentServer): { recoverUs: number; receiptSignUs: number } {
  const key = randomBytes(32);
  const samples = Array.from({ length: 256 }, () => {
    const digest = randomBytes(32);
    const { signature, recid } = secp256k1.ecdsaSign(digest, key);
    return { digest, signature, recid };
  });
  const output = new Uint8Array(65);
  const recover = (i: number) => {
    const s = samples[i & 255];
    secp256k1.ecdsaRecover(s.signature, s.recid, s.digest, false, output);
  };
  const request = `0x${"ab".repeat(32)}` as const;
  const sign = (i: number) =>
    server.receipts.sign({
      channelId: BigInt(i) << 24n,
      voucherAmount: BigInt(i + 1) * 1000n,
      charge: 1000n,
      chargedTotal: BigInt(i + 1) * 1000n,
      request,
      issuedAt: 1_700_000_000 + i,
    });
  cpuUsPerCall(100, recover);
  cpuUsPerCall(100, sign);
  const recovers: number[] = [];
  const signs: number[] = [];
  for (let r = 0; r < 3; r++) {
    recovers.push(cpuUsPerCall(300, recover));
    signs.push(cpuUsPerCall(300, sign));
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[1];
  const round1 = (x: number) => Math.round(x * 10) / 10;
  return { recoverUs: round1(median(recovers)), receiptSignUs: round1(median(signs)) };
}

async function main(): Promise<void> {
  const configFile = process.env.BENCH_SERVER_CONFIG;
  if (!configFile || !process.send) throw new Error("run by scripts/bench/http.ts (IPC + BENCH_SERVER_CONFIG)");
  const upstream = await startUpstream();
  const config = loadConfig(configFile, process.env);
  const withUpstream = { ...config, upstream: new URL(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`) };
  const server: PaymentServer = await createPaymentServer(withUpstream, { logger: createLogger({ level: "warn" }) });
  const { port } = await server.start();
  const send = (message: object) => process.send?.(message);
  // Sampled every 10 ms: a 1 ms timer alone kept 4 % of a core busy in this process (measured idle).
  // The histogram holds whole intervals between the timer's runs; the delay is what exceeds 10 ms.
  const LOOP_SAMPLE_MS = 10;
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();

  process.on("message", (message: Message) => {
    void (async () => {
      if (message.type === "waitChannels") {
        const ids = message.ids.map((id) => BigInt(id));
        const deadline = Date.now() + 30_000;
        while (ids.some((id) => server.engine.record(id) === undefined)) {
          if (Date.now() > deadline) throw new Error("the watcher did not report every channel within 30 s");
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        send({ type: "channelsReady" });
      } else if (message.type === "ledgers") {
        let chargedTotal = 0n;
        let vouchers = 0;
        for (const ledger of server.store.loadLedgers()) {
          chargedTotal += ledger.chargedTotal;
          vouchers += server.store.loadVoucherAmounts(ledger.channelId).length;
        }
        send({ type: "ledgers", chargedTotal: chargedTotal.toString(), vouchers });
      } else if (message.type === "stats") {
        const store = server.store as { stats?: () => { batches: number; writes: number } };
        const { batches, writes } = store.stats?.() ?? { batches: 0, writes: 0 };
        const ms = (ns: number) => Math.max(0, Math.round(ns / 1e3 - LOOP_SAMPLE_MS * 1e3) / 1e3);
        send({
          type: "stats",
          batches,
          writes,
          fsync: await server.metrics.fsyncCounts(),
          loopP50Ms: ms(loopDelay.percentile(50)),
          loopP99Ms: ms(loopDelay.percentile(99)),
          loopMaxMs: ms(loopDelay.max),
        });
        loopDelay.reset();
      } else if (message.type === "crypto") {
        send({ type: "crypto", ...measureCrypto(server) });
      } else if (message.type === "stop") {
        await server.stop();
        upstream.closeAllConnections();
        await new Promise<void>((resolve) => upstream.close(() => resolve()));
        process.exit(0);
      }
    })().catch((error: unknown) => {
      process.stderr.write(
        `bench server: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exit(1);
    });
  });
  // The parent went away: do not linger.
  process.on("disconnect", () => process.exit(1));
  send({ type: "ready", port });
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench server failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
