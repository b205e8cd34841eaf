import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type { Address } from "viem";

/**
 * Test infrastructure for code that talks JSON-RPC to a real chain: a `hardhat node` child
 * process on a free port, and an HTTP proxy in front of it that can inject faults.
 */

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** Addresses of the contracts deployed by the "local" deploy scripts. */
export interface LocalDeployments {
  readonly MockUSDC: Address;
  readonly MockEURC: Address;
  /** A MockPriceFeed of EUR / USD. */
  readonly MockEurUsdFeed: Address;
  readonly PaymentChannels: Address;
}

/** A running `hardhat node`. */
export interface HardhatNode {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** Set when started with `deploy: true`. */
  readonly deployments?: LocalDeployments;
  /** The node's stdout and stderr so far (for failure messages). */
  output(): string;
  /** Terminates the node's whole process group and waits until it is gone. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startHardhatNode}. */
export interface StartHardhatNodeOptions {
  /**
   * Run the "local" deploy scripts (MockUSDC, MockEURC, a mock EUR / USD feed, PaymentChannels) at start-up. hardhat-deploy then
   * writes `deployments/localhost` for whatever port the node listens on, shared by every node
   * started from this checkout; the helper instead passes `--write false --export <tmp file>`
   * and reads the addresses from the export, so parallel nodes and a developer's own
   * `npx hardhat node` never overwrite each other. Default false (`--no-deploy`).
   */
  readonly deploy?: boolean;
  /** How long to wait for the node to answer eth_chainId. Default 60,000 ms. */
  readonly readyTimeoutMs?: number;
}

/** A TCP port that was free a moment ago (a race with other processes is retried by the caller). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether any process of the group led by `pgid` is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // Already gone.
  }
}

async function rpcChainId(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(1_000),
    });
    const body = (await response.json()) as { result?: string };
    return typeof body.result === "string";
  } catch {
    return false;
  }
}

/**
 * Starts `npx hardhat node --hostname 127.0.0.1 --port <free port>` in its own process group
 * (npx → node → hardhat: killing only the direct child would orphan the node) and resolves once
 * it answers eth_chainId. A `process.on("exit")` hook kills the group if the test run ends
 * without calling {@link HardhatNode.stop}.
 */
export async function startHardhatNode(options: StartHardhatNodeOptions = {}): Promise<HardhatNode> {
  let lastError: unknown;
  // A port taken between freePort() and the node's bind makes the node exit: try another.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(await freePort(), options);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOnce(port: number, options: StartHardhatNodeOptions): Promise<HardhatNode> {
  const url = `http://127.0.0.1:${port}`;
  const tmp = mkdtempSync(path.join(os.tmpdir(), "paychan-node-"));
  const exportFile = path.join(tmp, "deployments.json");
  const deployArgs = options.deploy
    ? ["--no-reset", "--write", "false", "--export", exportFile]
    : ["--no-deploy", "--no-reset"];
  const child: ChildProcess = spawn(
    "npx",
    ["hardhat", "node", "--hostname", "127.0.0.1", "--port", String(port), ...deployArgs],
    { cwd: REPO_ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, FORCE_COLOR: "0" } },
  );
  const pgid = child.pid;
  if (pgid === undefined) throw new Error("could not spawn npx hardhat node");

  let output = "";
  const append = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64_000);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  let exited = false;
  child.on("exit", () => (exited = true));

  const killOnExit = () => killGroup(pgid, "SIGKILL");
  process.on("exit", killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off("exit", killOnExit);
      killGroup(pgid, "SIGTERM");
      for (let waited = 0; groupAlive(pgid) && waited < 5_000; waited += 50) await delay(50);
      if (groupAlive(pgid)) killGroup(pgid, "SIGKILL");
      for (let waited = 0; groupAlive(pgid) && waited < 5_000; waited += 50) await delay(50);
      child.stdout?.destroy();
      child.stderr?.destroy();
      rmSync(tmp, { recursive: true, force: true });
    })();
    return stopped;
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  while (!(await rpcChainId(url))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`hardhat node on port ${port} did not start:\n${output}`);
    }
    await delay(100);
  }

  let deployments: LocalDeployments | undefined;
  if (options.deploy) {
    try {
      const exported = JSON.parse(readFileSync(exportFile, "utf8")) as {
        contracts: Record<string, { address: Address }>;
      };
      deployments = {
        MockUSDC: exported.contracts.MockUSDC.address,
        MockEURC: exported.contracts.MockEURC.address,
        MockEurUsdFeed: exported.contracts.MockEurUsdFeed.address,
        PaymentChannels: exported.contracts.PaymentChannels.address,
      };
    } catch (error) {
      await stop();
      throw new Error(`hardhat node started but its deployment export is unreadable: ${String(error)}\n${output}`);
    }
  }
  return { url, port, deployments, output: () => output, stop };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------- fault-injecting proxy

/** One JSON-RPC call seen by the proxy. */
export interface ProxiedCall {
  /** 0-based, over the proxy's lifetime (or since the last reset). */
  readonly index: number;
  readonly id: unknown;
  readonly method: string;
  readonly params: unknown[];
}

/**
 * What the proxy does with an HTTP request, decided from its first JSON-RPC call:
 * - "pass": forward to the node and relay its answer;
 * - "drop": destroy the connection without answering;
 * - "hang": never answer (the client's timeout must fire);
 * - `{ status, body }`: answer with this HTTP status and JSON body (e.g. 429, or a JSON-RPC error).
 */
export type FaultAction = "pass" | "drop" | "hang" | { readonly status: number; readonly body: unknown };

/** A running fault-injecting proxy. */
export interface RpcProxy {
  readonly url: string;
  /** Every call received, faulted or not. */
  readonly calls: ProxiedCall[];
  /** How many requests were answered with a fault (anything but "pass"). */
  faults(): number;
  /** Replaces the fault policy. */
  setFault(policy: (call: ProxiedCall) => FaultAction): void;
  /** Forgets recorded calls and the fault count (call indexes restart at 0). */
  reset(): void;
  stop(): Promise<void>;
}

/** Answers a JSON-RPC error inside an HTTP 200, as providers do for "too many results" and the like. */
export function jsonRpcError(call: ProxiedCall, code: number, message: string): FaultAction {
  return { status: 200, body: { jsonrpc: "2.0", id: call.id, error: { code, message } } };
}

/**
 * Starts an HTTP proxy on 127.0.0.1 in front of `target`, applying `policy` to each request. It
 * exists to test retry paths against real transports: HTTP 429 and 5xx, dropped connections and
 * requests that never answer all reach viem the way they do in production.
 */
export async function startRpcProxy(
  target: string,
  policy: (call: ProxiedCall) => FaultAction = () => "pass",
): Promise<RpcProxy> {
  const calls: ProxiedCall[] = [];
  let faultCount = 0;
  let next = 0;
  let current = policy;
  const sockets = new Set<net.Socket>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const body = Buffer.concat(chunks).toString();
        let action: FaultAction = "pass";
        try {
          const parsed = JSON.parse(body) as unknown;
          const list = (Array.isArray(parsed) ? parsed : [parsed]) as {
            id?: unknown;
            method?: string;
            params?: unknown[];
          }[];
          const recorded = list.map((c) => ({
            index: next++,
            id: c.id,
            method: c.method ?? "",
            params: c.params ?? [],
          }));
          calls.push(...recorded);
          if (recorded.length > 0) action = current(recorded[0]);
        } catch {
          // Not JSON: let the node answer it.
        }
        if (action !== "pass") faultCount++;
        if (action === "drop") {
          req.socket.destroy();
          return;
        }
        if (action === "hang") return; // the socket is destroyed by stop() at the latest
        if (action !== "pass") {
          res.writeHead(action.status, { "content-type": "application/json" });
          res.end(JSON.stringify(action.body));
          return;
        }
        try {
          const upstream = await fetch(target, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
          });
          const text = await upstream.text();
          res.writeHead(upstream.status, { "content-type": "application/json" });
          res.end(text);
        } catch (error) {
          res.writeHead(502, { "content-type": "text/plain" });
          res.end(String(error));
        }
      })();
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    faults: () => faultCount,
    setFault: (p) => {
      current = p;
    },
    reset: () => {
      calls.length = 0;
      faultCount = 0;
      next = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
