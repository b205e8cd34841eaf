import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

/**
 * Latency of one small append + fsync in the temp directory (where the benchmark's SQLite files
 * live): the floor under a durable paid request, since every one waits for a group commit's fsync.
 */
export function measureFsyncLatency(count = 200): { p50Ms: number; p99Ms: number; meanMs: number } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-fsync-"));
  const fd = openSync(path.join(dir, "probe"), "w");
  const block = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      writeSync(fd, block);
      const t0 = performance.now();
      fsyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    p50Ms: r(times[Math.floor(count / 2)]),
    p99Ms: r(times[Math.floor(count * 0.99)]),
    meanMs: r(times.reduce((a, b) => a + b, 0) / count),
  };
}
