import { fork, type ChildProcess } from "node:child_process";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import autocannon from "autocannon";
import secp256k1 from "secp256k1";
import { createPublicClient, createWalletClient, http as httpTransport, toHex, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { createVoucherHasher } from "../../src/protocol/fastVerify";
import { channelIdHex, decodeHeader, encodePaymentSignature, type PaymentRequired } from "../../src/protocol/headers";
import { PAYEE_KEY_ENV } from "../../src/shared/config";
import type { BucketCounts } from "../../src/server/metrics";
import type { HardhatNode } from "../../test/helpers/hardhatNode";
import { TS_REGISTER } from "./proc";
import { HARDHAT_KEYS } from "../../test/helpers/hardhatKeys";

/**
 * The HTTP part of `npm run bench`: the paychan reverse proxy (a child process, see server.ts)
 * in front of a minimal upstream, loaded by autocannon from this process: a free route against a
 * paid one, and the paid one with fsync on and off. Every paid request carries a distinct,
 * valid voucher, signed before the timed window with libsecp256k1 over the fast digest.
 *
 * Two kinds of runs: saturation runs (autocannon, closed loop, `connections` requests always in
 * flight) give the throughputs; their latency is mostly queueing (about connections / rate).
 * Then fixed-rate runs (open loop, see {@link paced}) offer the free and the paid route the SAME
 * rate, a fraction of the paid saturation rate, and the latency added by payment is paid − free
 * there.
 */

// Roles on the local chain (Hardhat development accounts).
export const MINTER_KEY: Hex = HARDHAT_KEYS[1];
export const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
export const PAYER_KEY: Hex = HARDHAT_KEYS[3];

export const PRICE = 1_000n; // "$0.001" in 6-decimal mock USDC
const CHANNEL_DEPOSIT = 10_000_000_000n; // $10,000: room for 10 million vouchers per channel
const WITHDRAW_DELAY = 86_400;

export interface HttpOptions {
  readonly connections: number;
  readonly rounds: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
  /** Length of each fixed-rate latency run, seconds (after a 1 s warm-up at the same rate). */
  readonly latencySeconds: number;
  /** The fixed offered rate of the latency runs, as a fraction of the median paid saturation rate. */
  readonly latencyRateFraction: number;
  /** Directory for `--cpu-prof` of the server children, if profiling. */
  readonly cpuProfDir?: string;
  /**
   * Quick mode, for measuring one change against another: only the durable (fsync) server, its
   * free and paid runs and the cryptography timing; no fsync-off or fsync-in-COMMIT servers and
   * no fixed-rate latency runs (their figures are reported as 0).
   */
  readonly quick?: boolean;
  readonly log: (line: string) => void;
}

/** One autocannon run. */
export interface LoadRun {
  readonly label: string;
  readonly requests: number;
  readonly ok: number;
  readonly non200: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  /** CPU use during the run, in cores (1 = one core busy): this process (autocannon) and the server child. */
  readonly clientCpu: number;
  readonly serverCpu: number;
  /** Server child CPU time per request, µs: steadier than req/s on a shared machine. */
  readonly serverCpuUsPerRequest: number;
  /** Writes per group commit in the server's store during the run (0 when nothing was written). */
  readonly writesPerCommit: number;
}

/** One fixed-rate (open-loop) run: requests issued on a schedule whatever the responses. */
export interface RateRun {
  readonly label: string;
  /** Offered rate, requests per second. */
  readonly rate: number;
  readonly requests: number;
  readonly non200: number;
  /** Achieved rate (responses / seconds from the first request to the last response). */
  readonly rps: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Most requests in flight at once. */
  readonly maxInflight: number;
  /** Writes per group commit in the server's store during the run (0 when nothing was written). */
  readonly writesPerCommit: number;
  /** WAL fsyncs during the run, how many took over 5 ms, and the bucket bound the longest stayed under (ms; null: over 1 s). */
  readonly fsyncs: number;
  readonly fsyncsOver5Ms: number;
  readonly longestFsyncUnderMs: number | null;
  /** The server's event-loop delay during the run (ms): how long requests waited behind blocking work. */
  readonly loopDelayP99Ms: number;
  readonly loopDelayMaxMs: number;
  readonly serverCpu: number;
  readonly serverCpuUsPerRequest: number;
}

export interface HttpResults {
  readonly runs: LoadRun[];
  readonly rateRuns: RateRun[];
  readonly unpaidRps: number;
  readonly paidRps: number;
  readonly noFsyncPaidRps: number;
  /** Paid req/s with SQLite's own fsync inside COMMIT, on the event loop (`database.fsync: "commit"`). */
  readonly commitFsyncPaidRps: number;
  /** Saturation (closed loop, `connections` in flight): latency is mostly queueing there. */
  readonly unpaid: { p50Ms: number; p99Ms: number };
  readonly paid: { p50Ms: number; p99Ms: number };
  readonly saturationAdded: { p50Ms: number; p99Ms: number };
  /** The fixed offered rate of the latency runs (req/s), the same for the free and the paid route. */
  readonly latencyRate: number;
  readonly atRate: { unpaid: { p50Ms: number; p99Ms: number }; paid: { p50Ms: number; p99Ms: number } };
  /** Paid − free at {@link latencyRate}: the latency payment adds, medians over rounds. */
  readonly p50AddedMs: number;
  readonly p99AddedMs: number;
  readonly paidOverUnpaid: number;
  /** Median server CPU µs per request: free route, paid (fsync), paid (no fsync), paid (fsync in COMMIT). */
  readonly serverCpuUsPerRequest: { unpaid: number; paid: number; paidNoFsync: number; paidCommitFsync: number };
  /**
   * CPU µs of the cryptography a paid request cannot avoid, timed in the durable server's process
   * after each round (medians): one libsecp256k1 ecdsaRecover and one receipt signature
   * (ReceiptSigner.sign: digest + libsecp256k1 sign).
   */
  readonly cryptoUs: { recover: number; receiptSign: number };
  /**
   * What payment costs the server beyond its cryptography: (paid − free server CPU µs per
   * request) ÷ (recover µs + receipt-sign µs), from the medians above. 1 would mean a paid
   * request costs a free one plus its two signature operations and nothing else.
   */
  readonly overheadOverCrypto: number;
  readonly accounting: {
    server: string;
    paid200: number;
    vouchersStored: number;
    chargedTotal: string;
    expected: string;
    ok: boolean;
  }[];
  readonly vouchersSignedOnTheFly: number;
}

export interface Channel {
  readonly id: bigint;
  readonly idHex: Hex;
  readonly key: Uint8Array;
}

/** A paychan server child process. */
class ServerChild {
  private constructor(
    readonly label: string,
    readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(label: string, configFile: string, cpuProfDir: string | undefined): Promise<ServerChild> {
    const execArgv = ["-r", TS_REGISTER];
    if (cpuProfDir)
      execArgv.push("--cpu-prof", "--cpu-prof-dir", cpuProfDir, "--cpu-prof-name", `server-${label}.cpuprofile`);
    const child = fork(path.join(__dirname, "server.ts"), [], {
      execArgv,
      env: { ...process.env, BENCH_SERVER_CONFIG: configFile, [PAYEE_KEY_ENV]: PAYEE_KEY },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const kill = () => child.kill("SIGKILL");
    process.on("exit", kill);
    child.once("exit", () => process.off("exit", kill));
    const ready = await awaitMessage<{ port: number }>(child, "ready", 60_000);
    return new ServerChild(label, child, ready.port);
  }

  async request<T>(message: object, reply: string, timeoutMs = 60_000): Promise<T> {
    const answer = awaitMessage<T>(this.child, reply, timeoutMs);
    this.child.send(message);
    return answer;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.send({ type: "stop" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
  }
}

function awaitMessage<T>(child: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`no "${type}" from the server child within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (message: { type?: string }) => {
      if (message?.type === type) done(undefined, message as T);
    };
    const onExit = (code: number | null) => done(new Error(`the server child exited (${code}) before "${type}"`));
    const done = (error: Error | undefined, value?: T) => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      if (error) reject(error);
      else resolve(value as T);
    };
    child.on("message", onMessage);
    child.on("exit", onExit);
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length % 2
    ? sorted[sorted.length >> 1]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * Distinct vouchers, round-robin over the channels: the g-th voucher issued pays channel g mod N
 * with cumulative amount (⌊g / N⌋ + 1) · price. Any subset of them, in any order, is accepted by a
 * server (k accepted vouchers of a channel include one of at least k · price), so two servers
 * with separate stores can share the channels.
 */
export class VoucherSource {
  private issued = 0;
  private pool: string[] = [];
  private next = 0;
  onTheFly = 0;
  private readonly hasher;

  constructor(
    private readonly channels: readonly Channel[],
    private readonly offer: PaymentRequired["accepts"][number],
    chainId: number,
    contract: Address,
  ) {
    this.hasher = createVoucherHasher(chainId, contract);
  }

  private sign(): string {
    const g = this.issued++;
    const channel = this.channels[g % this.channels.length];
    const amount = BigInt(Math.floor(g / this.channels.length) + 1) * PRICE;
    const { signature, recid } = secp256k1.ecdsaSign(this.hasher.digest(channel.id, amount), channel.key);
    return encodePaymentSignature(this.offer, {
      channelId: channel.idHex,
      amount: amount.toString(),
      signature: `${toHex(signature)}${(27 + recid).toString(16)}` as Hex,
    });
  }

  /** Signs `count` headers now (outside any timed window), replacing the unused rest. */
  prepare(count: number): void {
    this.pool = new Array<string>(count);
    for (let i = 0; i < count; i++) this.pool[i] = this.sign();
    this.next = 0;
  }

  take(): string {
    if (this.next < this.pool.length) return this.pool[this.next++];
    this.onTheFly++;
    return this.sign();
  }
}

/** CPU seconds (user + system) used so far by process `pid`, from /proc (0 where unavailable). */
export function cpuSecondsOf(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

async function load(
  label: string,
  server: ServerChild,
  routePath: string,
  requests: number,
  connections: number,
  vouchers: VoucherSource | undefined,
): Promise<Omit<LoadRun, "writesPerCommit">> {
  const latencies = new Float64Array(requests + connections * 4);
  let n = 0;
  const request: autocannon.Request = vouchers
    ? {
        method: "GET",
        path: routePath,
        setupRequest: (req) => ({ ...req, headers: { ...req.headers, "payment-signature": vouchers.take() } }),
      }
    : { method: "GET", path: routePath };
  const started = performance.now();
  const clientCpuStart = process.cpuUsage();
  const serverCpuStart = cpuSecondsOf(server.child.pid);
  const instance = autocannon({
    url: `http://127.0.0.1:${server.port}`,
    connections,
    amount: requests,
    requests: [request],
    timeout: 30,
  });
  // autocannon reports "done" on its next 1 s sampling tick after the last response, so the run's
  // length is taken from the last response instead (CPU up to that moment too).
  const snapshot = () => ({ clientCpu: process.cpuUsage(clientCpuStart), serverCpu: cpuSecondsOf(server.child.pid) });
  let lastResponse = started;
  let end: ReturnType<typeof snapshot> | undefined;
  instance.on("response", (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
    lastResponse = performance.now();
    if (n < latencies.length) latencies[n++] = responseTime;
    if (n === requests) end = snapshot();
  });
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    instance.once("done", resolve);
    instance.once("error", reject);
  });
  const { clientCpu, serverCpu: serverCpuEnd } = end ?? snapshot(); // fewer responses: errors or timeouts
  const seconds = (lastResponse - started) / 1000;
  const serverCpu = serverCpuEnd - serverCpuStart;
  const ok = (result.statusCodeStats as Record<string, { count: number } | undefined>)["200"]?.count ?? 0;
  const total = result.requests.total;
  const sorted = latencies.subarray(0, n).sort();
  return {
    label,
    requests: total,
    ok,
    non200: total - ok + result.errors + result.timeouts,
    seconds: round3(seconds),
    rps: Math.round(total / seconds),
    p50Ms: round3(percentile(sorted, 50)),
    p90Ms: round3(percentile(sorted, 90)),
    p99Ms: round3(percentile(sorted, 99)),
    clientCpu: Math.round(((clientCpu.user + clientCpu.system) / 1e6 / seconds) * 100) / 100,
    serverCpu: Math.round((serverCpu / seconds) * 100) / 100,
    serverCpuUsPerRequest: Math.round((serverCpu / Math.max(1, total)) * 1e6),
  };
}

/**
 * Open-loop load at a fixed rate: request i is issued at start + i / rate (the due ones on each
 * timer tick), over at most `connections` keep-alive sockets, whatever the earlier responses
 * did. autocannon's `overallRate` is not used: it lets every connection send back to back until
 * its per-second quota is spent and then pauses it, so the first part of every second runs at
 * saturation and its latency is queueing again. Latency is taken from the scheduled time to the
 * last body byte, so a late timer or a full socket pool counts against the run, not for it.
 */
async function paced(
  label: string,
  server: ServerChild,
  routePath: string,
  rate: number,
  seconds: number,
  connections: number,
  vouchers: VoucherSource | undefined,
): Promise<RateRun & { ok: number }> {
  const total = Math.max(1, Math.round(rate * seconds));
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections });
  const latencies = new Float64Array(total);
  const interval = 1000 / rate;
  let sent = 0;
  let finished = 0;
  let ok = 0;
  let inflight = 0;
  let maxInflight = 0;
  type Stats = { batches: number; writes: number; fsync: BucketCounts; loopP99Ms: number; loopMaxMs: number };
  const before = await server.request<Stats>({ type: "stats" }, "stats");
  const serverCpuStart = cpuSecondsOf(server.child.pid);
  const start = performance.now() + 5;
  let end = start;
  await new Promise<void>((resolve) => {
    const complete = (i: number, scheduled: number, status: number) => {
      const now = performance.now();
      latencies[i] = now - scheduled;
      inflight--;
      if (status === 200) ok++;
      if (++finished === total) {
        end = now;
        resolve();
      }
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        const i = sent++;
        const scheduled = start + i * interval;
        const headers: Record<string, string> = vouchers ? { "payment-signature": vouchers.take() } : {};
        inflight++;
        if (inflight > maxInflight) maxInflight = inflight;
        const req = http.request({ host: "127.0.0.1", port: server.port, path: routePath, agent, headers }, (res) => {
          res.on("end", () => complete(i, scheduled, res.statusCode ?? 0));
          res.resume();
        });
        req.on("error", () => complete(i, scheduled, 0));
        req.end();
      }
      if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    };
    setTimeout(tick, 5);
  });
  agent.destroy();
  const serverCpu = cpuSecondsOf(server.child.pid) - serverCpuStart;
  const after = await server.request<Stats>({ type: "stats" }, "stats");
  const commits = after.batches - before.batches;
  const sorted = latencies.sort();
  const elapsed = (end - start) / 1000;
  return {
    label,
    rate,
    requests: total,
    ok,
    non200: total - ok,
    rps: Math.round(total / elapsed),
    p50Ms: round3(percentile(sorted, 50)),
    p90Ms: round3(percentile(sorted, 90)),
    p99Ms: round3(percentile(sorted, 99)),
    maxMs: round3(sorted[sorted.length - 1]),
    maxInflight,
    writesPerCommit: commits > 0 ? Math.round(((after.writes - before.writes) / commits) * 100) / 100 : 0,
    ...fsyncsBetween(before.fsync, after.fsync),
    loopDelayP99Ms: after.loopP99Ms,
    loopDelayMaxMs: after.loopMaxMs,
    serverCpu: Math.round((serverCpu / elapsed) * 100) / 100,
    serverCpuUsPerRequest: Math.round((serverCpu / total) * 1e6),
  };
}

/** What a run's WAL fsyncs were, from the server's fsync histogram before and after it. */
function fsyncsBetween(
  before: BucketCounts,
  after: BucketCounts,
): Pick<RateRun, "fsyncs" | "fsyncsOver5Ms" | "longestFsyncUnderMs"> {
  const fsyncs = after.count - before.count;
  const within = after.bounds.map((_, i) => after.counts[i] - before.counts[i]);
  const at5 = after.bounds.findIndex((b) => b >= 0.005);
  const all = within.findIndex((n) => n === fsyncs);
  return {
    fsyncs,
    fsyncsOver5Ms: fsyncs - (at5 >= 0 ? within[at5] : fsyncs),
    longestFsyncUnderMs: fsyncs === 0 ? 0 : all >= 0 ? after.bounds[all] * 1000 : null,
  };
}

function fsyncSummary(run: RateRun): string {
  if (run.fsyncs === 0) return "no fsync";
  const longest = run.longestFsyncUnderMs === null ? "over 1 s" : `under ${run.longestFsyncUnderMs} ms`;
  return `${run.fsyncs} fsyncs, ${run.fsyncsOver5Ms} over 5 ms, longest ${longest}`;
}

/** Opens `count` channels from PAYER_KEY to the payee, each with a fresh session key. */
export async function openChannels(
  node: HardhatNode,
  count: number,
  deposit: bigint,
): Promise<{ channels: Channel[]; openGas: bigint[] }> {
  const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
  const transport = httpTransport(node.url);
  const publicClient = createPublicClient({ chain: hardhat, transport });
  const minter = createWalletClient({ account: privateKeyToAccount(MINTER_KEY), chain: hardhat, transport });
  const payerAccount = privateKeyToAccount(PAYER_KEY);
  const payer = createWalletClient({ account: payerAccount, chain: hardhat, transport });
  const payee = privateKeyToAccount(PAYEE_KEY).address;
  const wait = async (hash: Hex) => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`transaction ${hash} reverted`);
    return receipt;
  };
  await wait(
    await minter.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [payerAccount.address, deposit * BigInt(count)],
    }),
  );
  await wait(
    await payer.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "approve",
      args: [contract, deposit * BigInt(count)],
    }),
  );
  const channels: Channel[] = [];
  const openGas: bigint[] = [];
  for (let i = 0; i < count; i++) {
    const keyHex = generatePrivateKey();
    const session = privateKeyToAccount(keyHex);
    const id = await publicClient.readContract({
      address: contract,
      abi: paymentChannelsAbi,
      functionName: "nextChannelId",
      args: [session.address],
    });
    const receipt = await wait(
      await payer.writeContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "open",
        args: [payee, usdc, session.address, WITHDRAW_DELAY, deposit],
      }),
    );
    openGas.push(receipt.gasUsed);
    channels.push({ id, idHex: channelIdHex(id), key: Uint8Array.from(Buffer.from(keyHex.slice(2), "hex")) });
  }
  return { channels, openGas };
}

/** The store of a bench server: fsync off the event loop (the default), none, or inside COMMIT. */
type StoreMode = "fsync" | "nofsync" | "commit";

function writeServerConfig(dir: string, node: HardhatNode, mode: StoreMode): string {
  const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
  const file = path.join(dir, `paychan-${mode}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      upstream: "http://127.0.0.1:1", // replaced by the child's own upstream
      listen: { host: "127.0.0.1", port: 0 },
      network: "localhost",
      rpcUrl: node.url,
      contract,
      token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
      routes: { "GET /paid": "$0.001", "GET /free": null },
      minDeposit: "$1",
      minWithdrawDelay: 3600,
      pollIntervalMs: 200,
      database: {
        path: path.join(dir, `paychan-${mode}.db`),
        durable: mode !== "nofsync",
        fsync: mode === "commit" ? "commit" : "background",
      },
    }),
  );
  return file;
}

/** Runs the whole HTTP part against a running hardhat node (deployed). */
export async function runHttpBench(node: HardhatNode, options: HttpOptions): Promise<HttpResults> {
  const { log, connections } = options;
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-bench-"));
  const servers: ServerChild[] = [];
  try {
    log(`  opening ${connections} channels (session keys, $${Number(CHANNEL_DEPOSIT) / 1e6} each) ...`);
    const { channels } = await openChannels(node, connections, CHANNEL_DEPOSIT);
    const fsync = await ServerChild.start("fsync", writeServerConfig(dir, node, "fsync"), options.cpuProfDir);
    servers.push(fsync);
    const quick = options.quick === true;
    const noFsync = quick
      ? undefined
      : await ServerChild.start("nofsync", writeServerConfig(dir, node, "nofsync"), options.cpuProfDir);
    if (noFsync) servers.push(noFsync);
    const commitFsync = quick
      ? undefined
      : await ServerChild.start("commit", writeServerConfig(dir, node, "commit"), options.cpuProfDir);
    if (commitFsync) servers.push(commitFsync);
    const ids = channels.map((c) => c.id.toString());
    for (const server of servers) await server.request({ type: "waitChannels", ids }, "channelsReady");

    const offerResponse = await fetch(`http://127.0.0.1:${fsync.port}/paid`);
    await offerResponse.arrayBuffer();
    if (offerResponse.status !== 402) throw new Error(`GET /paid without payment: ${offerResponse.status}, not 402`);
    const required = decodeHeader<PaymentRequired>(offerResponse.headers.get("payment-required") ?? "");
    const vouchers = new VoucherSource(channels, required.accepts[0], hardhat.id, node.deployments!.PaymentChannels);

    const paid200 = new Map<ServerChild, number>(servers.map((s) => [s, 0]));
    const estimate = new Map<string, number>();
    const runs: LoadRun[] = [];
    /** A warm-up then a measured run of about `seconds`, sized from the latest rate seen. */
    const measure = async (label: string, server: ServerChild, routePath: string, paid: boolean): Promise<LoadRun> => {
      const key = `${server.label} ${routePath}`;
      if (!estimate.has(key)) {
        if (paid) vouchers.prepare(2_000 + connections * 2);
        const calibration = await load(
          `${label} calibration`,
          server,
          routePath,
          2_000,
          connections,
          paid ? vouchers : undefined,
        );
        if (paid) paid200.set(server, paid200.get(server)! + calibration.ok);
        estimate.set(key, calibration.rps);
      }
      const warmup = Math.max(1_000, Math.round(estimate.get(key)! * options.warmupSeconds));
      if (paid) vouchers.prepare(warmup + connections * 2);
      const w = await load(`${label} warm-up`, server, routePath, warmup, connections, paid ? vouchers : undefined);
      if (paid) paid200.set(server, paid200.get(server)! + w.ok);
      // Sized from the faster of the warm-up and the previous run (a slow warm-up does not shorten
      // it), but at most 1.5 × the warm-up's rate (a machine that slowed down does not stretch it).
      const rate = Math.min(Math.max(w.rps, estimate.get(key)!), 1.5 * w.rps);
      const count = Math.max(2_000, Math.round(rate * options.seconds));
      if (paid) vouchers.prepare(Math.round(count * 1.05) + connections * 2);
      const before = await server.request<{ batches: number; writes: number }>({ type: "stats" }, "stats");
      const measured = await load(label, server, routePath, count, connections, paid ? vouchers : undefined);
      const after = await server.request<{ batches: number; writes: number }>({ type: "stats" }, "stats");
      const commits = after.batches - before.batches;
      const run: LoadRun = {
        ...measured,
        writesPerCommit: commits > 0 ? Math.round(((after.writes - before.writes) / commits) * 100) / 100 : 0,
      };
      if (paid) paid200.set(server, paid200.get(server)! + run.ok);
      estimate.set(key, run.rps);
      runs.push(run);
      vouchers.prepare(0);
      log(
        `  ${label.padEnd(26)} ${String(run.rps).padStart(6)} req/s  p50 ${run.p50Ms.toFixed(3)} ms  ` +
          `p99 ${run.p99Ms.toFixed(3)} ms  (${run.requests} requests in ${run.seconds.toFixed(1)} s, non-200: ${run.non200}; CPU: client ${run.clientCpu}, server ${run.serverCpu} = ${run.serverCpuUsPerRequest} µs/req` +
          `${paid ? `; ${run.writesPerCommit} writes/commit` : ""})`,
      );
      return run;
    };

    const rounds: {
      unpaid: LoadRun;
      paid: LoadRun;
      noFsync: LoadRun | undefined;
      commitFsync: LoadRun | undefined;
      crypto: { recoverUs: number; receiptSignUs: number };
    }[] = [];
    for (let r = 1; r <= options.rounds; r++) {
      const unpaid = await measure(`round ${r} unpaid (free route)`, fsync, "/free", false);
      const paid = await measure(`round ${r} paid, fsync`, fsync, "/paid", true);
      const noFsyncRun = noFsync && (await measure(`round ${r} paid, no fsync`, noFsync, "/paid", true));
      const commitRun = commitFsync && (await measure(`round ${r} paid, fsync in COMMIT`, commitFsync, "/paid", true));
      const crypto = await fsync.request<{ recoverUs: number; receiptSignUs: number }>({ type: "crypto" }, "crypto");
      log(
        `  round ${r} cryptography (server process, CPU): ecdsaRecover ${crypto.recoverUs} µs, ` +
          `receipt sign ${crypto.receiptSignUs} µs`,
      );
      rounds.push({ unpaid, paid, noFsync: noFsyncRun, commitFsync: commitRun, crypto });
    }

    // Latency added by payment: the free and the paid (fsync) route at the SAME fixed offered rate,
    // below saturation, so that queueing behind the server's CPU does not dominate what is measured.
    const medianPaidRps = median(rounds.map((x) => x.paid.rps));
    const latencyRate = Math.max(10, Math.round(medianPaidRps * options.latencyRateFraction));
    if (!quick)
      log(
        `  fixed-rate latency: ${latencyRate} req/s (${options.latencyRateFraction} × the median paid saturation ` +
          `rate ${Math.round(medianPaidRps)} req/s), ${connections} sockets at most, ${options.latencySeconds} s per run`,
      );
    const rateRuns: RateRun[] = [];
    const rateRounds: { unpaid: RateRun; paid: RateRun }[] = [];
    const atRate = async (label: string, routePath: string, paid: boolean): Promise<RateRun> => {
      const v = paid ? vouchers : undefined;
      if (paid) vouchers.prepare(latencyRate * (1 + options.latencySeconds) + connections * 2);
      const warm = await paced(`${label} warm-up`, fsync, routePath, latencyRate, 1, connections, v);
      const run = await paced(label, fsync, routePath, latencyRate, options.latencySeconds, connections, v);
      if (paid) paid200.set(fsync, paid200.get(fsync)! + warm.ok + run.ok);
      vouchers.prepare(0);
      const { ok: _ok, ...rest } = run;
      rateRuns.push(rest);
      log(
        `  ${label.padEnd(26)} ${String(run.rps).padStart(6)} req/s  p50 ${run.p50Ms.toFixed(3)} ms  ` +
          `p99 ${run.p99Ms.toFixed(3)} ms  max ${run.maxMs.toFixed(3)} ms  (${run.requests} requests, non-200: ${run.non200}; ` +
          `in flight ≤ ${run.maxInflight}; server CPU ${run.serverCpu} = ${run.serverCpuUsPerRequest} µs/req; ` +
          `${run.writesPerCommit} writes/commit; ${fsyncSummary(run)}; ` +
          `server event-loop delay p99 ${run.loopDelayP99Ms} ms, max ${run.loopDelayMaxMs} ms)`,
      );
      return rest;
    };
    for (let r = 1; r <= (quick ? 0 : options.rounds); r++) {
      const unpaid = await atRate(`round ${r} @${latencyRate}/s unpaid`, "/free", false);
      const paid = await atRate(`round ${r} @${latencyRate}/s paid`, "/paid", true);
      rateRounds.push({ unpaid, paid });
    }

    const accounting: HttpResults["accounting"] = [];
    for (const server of servers) {
      const ledgers = await server.request<{ chargedTotal: string; vouchers: number }>({ type: "ledgers" }, "ledgers");
      const ok200 = paid200.get(server)!;
      const expected = BigInt(ok200) * PRICE;
      accounting.push({
        server: server.label,
        paid200: ok200,
        vouchersStored: ledgers.vouchers,
        chargedTotal: ledgers.chargedTotal,
        expected: expected.toString(),
        ok: BigInt(ledgers.chargedTotal) === expected && ledgers.vouchers === ok200,
      });
    }

    const med = (pick: (round: (typeof rounds)[number]) => number) => round3(median(rounds.map(pick)));
    const unpaidRps = Math.round(med((x) => x.unpaid.rps));
    const paidRps = Math.round(med((x) => x.paid.rps));
    const medRate = (pick: (round: (typeof rateRounds)[number]) => number) =>
      rateRounds.length === 0 ? 0 : round3(median(rateRounds.map(pick)));
    const serverCpuUsPerRequest = {
      unpaid: med((x) => x.unpaid.serverCpuUsPerRequest),
      paid: med((x) => x.paid.serverCpuUsPerRequest),
      paidNoFsync: med((x) => x.noFsync?.serverCpuUsPerRequest ?? 0),
      paidCommitFsync: med((x) => x.commitFsync?.serverCpuUsPerRequest ?? 0),
    };
    const cryptoUs = { recover: med((x) => x.crypto.recoverUs), receiptSign: med((x) => x.crypto.receiptSignUs) };
    return {
      runs,
      rateRuns,
      unpaidRps,
      paidRps,
      noFsyncPaidRps: Math.round(med((x) => x.noFsync?.rps ?? 0)),
      commitFsyncPaidRps: Math.round(med((x) => x.commitFsync?.rps ?? 0)),
      unpaid: { p50Ms: med((x) => x.unpaid.p50Ms), p99Ms: med((x) => x.unpaid.p99Ms) },
      paid: { p50Ms: med((x) => x.paid.p50Ms), p99Ms: med((x) => x.paid.p99Ms) },
      saturationAdded: {
        p50Ms: med((x) => x.paid.p50Ms - x.unpaid.p50Ms),
        p99Ms: med((x) => x.paid.p99Ms - x.unpaid.p99Ms),
      },
      latencyRate,
      atRate: {
        unpaid: { p50Ms: medRate((x) => x.unpaid.p50Ms), p99Ms: medRate((x) => x.unpaid.p99Ms) },
        paid: { p50Ms: medRate((x) => x.paid.p50Ms), p99Ms: medRate((x) => x.paid.p99Ms) },
      },
      p50AddedMs: medRate((x) => x.paid.p50Ms - x.unpaid.p50Ms),
      p99AddedMs: medRate((x) => x.paid.p99Ms - x.unpaid.p99Ms),
      paidOverUnpaid: round3(med((x) => x.paid.rps / x.unpaid.rps)),
      serverCpuUsPerRequest,
      cryptoUs,
      overheadOverCrypto: round3(
        (serverCpuUsPerRequest.paid - serverCpuUsPerRequest.unpaid) / (cryptoUs.recover + cryptoUs.receiptSign),
      ),
      accounting,
      vouchersSignedOnTheFly: vouchers.onTheFly,
    };
  } finally {
    for (const server of servers) await server.stop().catch(() => server.child.kill("SIGKILL"));
    rmSync(dir, { recursive: true, force: true });
  }
}
