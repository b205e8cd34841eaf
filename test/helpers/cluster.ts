import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

/**
 * Several `paychan server` processes on one PostgreSQL database behind a round-robin HTTP proxy,
 * as the cluster tests and `npm run bench:cluster` run them.
 */

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** One `paychan server` child process. */
export interface Instance {
  readonly index: number;
  readonly pid: number;
  readonly url: string;
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Sends `signal` (default SIGKILL) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Writes `config` (plus this instance's port) next to `configBase` and runs `paychan server` on it,
 * resolving once its health endpoint answers. `args` are extra CLI arguments (e.g. --no-settler).
 */
export async function startInstance(
  index: number,
  configBase: string,
  config: Record<string, unknown>,
  port: number,
  env: NodeJS.ProcessEnv,
  args: readonly string[] = [],
  nodeArgs: readonly string[] = [],
): Promise<Instance> {
  const file = `${configBase}.${index}.json`;
  writeFileSync(file, JSON.stringify({ ...config, listen: { host: "127.0.0.1", port } }));
  const child = spawn(
    process.execPath,
    [...nodeArgs, path.join(REPO_ROOT, "bin", "paychan.js"), "server", "--config", file, ...args],
    { cwd: path.dirname(file), env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!alive()) throw new Error(`instance ${index} exited during start-up:\n${output}`);
    try {
      if ((await fetch(`${url}/healthz`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`instance ${index} did not become healthy:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    index,
    pid: child.pid as number,
    url,
    child,
    output: () => output,
    alive,
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (alive()) child.kill(signal);
      await exited;
    },
  };
}

/** Header naming the instance a response came from. */
export const BACKEND_HEADER = "x-cluster-backend";

/** A round-robin HTTP proxy in front of the instances that are alive. */
export interface RoundRobin {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Forwards each request to the next live instance in turn, adding {@link BACKEND_HEADER} to the
 * response. A request whose instance fails before answering gets a 502, as a load balancer
 * without retries gives: retrying is the client's business.
 */
export async function startRoundRobin(instances: () => readonly Instance[]): Promise<RoundRobin> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let next = 0;
  const server = http.createServer((req, res) => {
    const live = instances().filter((i) => i.alive());
    if (live.length === 0) {
      res.writeHead(503).end();
      return;
    }
    const target = live[next++ % live.length];
    const upstream = http.request(
      `${target.url}${req.url ?? "/"}`,
      { method: req.method, headers: req.headers, agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, [BACKEND_HEADER]: String(target.index) });
        answer.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502, { [BACKEND_HEADER]: String(target.index) });
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
