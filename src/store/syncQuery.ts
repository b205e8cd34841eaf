import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import type { ClientConfig } from "pg";

/**
 * Synchronous PostgreSQL queries, for the store methods whose callers are synchronous (the chain
 * watcher, the settler, start-up). A worker thread owns one connection; the caller posts the query
 * and blocks on an Atomics.wait until the worker has the answer, then takes it off a message port
 * without returning to the event loop. The block lasts one round trip to the database, less than
 * the fdatasync the SQLite store runs for the same writes; the request path never uses it (group
 * commit there is asynchronous).
 */

/** The worker: plain JavaScript (evaluated, so no TypeScript loader is needed in the thread). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { Client } = require(workerData.pgPath);
const { port, signal, config } = workerData;
const client = new Client(config);
// A lost connection fails the next query with this error instead of crashing the thread.
let broken;
client.on("error", (error) => { broken = error; });
const ready = client.connect();
parentPort.on("message", async (message) => {
  let reply;
  try {
    await ready;
    if (broken) throw broken;
    if (message.end) { await client.end(); reply = { rows: [], rowCount: 0 }; }
    else {
      const result = await client.query({ text: message.text, values: message.values });
      reply = { rows: result.rows, rowCount: result.rowCount ?? 0 };
    }
  } catch (error) {
    reply = { error: { message: String(error && error.message || error), code: error && error.code } };
  }
  port.postMessage(reply);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
});
`;

/** A failed synchronous query: the server's message and SQLSTATE code. */
export class SyncQueryError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = "SyncQueryError";
  }
}

interface Reply {
  readonly rows?: Record<string, unknown>[];
  readonly rowCount?: number;
  readonly error?: { message: string; code?: string };
}

/** One connection used synchronously from the calling thread. */
export class SyncQuery {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly signal = new Int32Array(new SharedArrayBuffer(4));
  private closed = false;

  constructor(
    config: ClientConfig,
    private readonly timeoutMs = 30_000,
  ) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { pgPath: require.resolve("pg"), port: port2, signal: this.signal, config },
      transferList: [port2],
    });
    // Only blocking calls talk to the worker; it must not keep the process alive by itself.
    this.worker.unref();
    this.port.unref();
  }

  /** Runs one statement and returns its rows; throws {@link SyncQueryError} when it fails. */
  query<Row = Record<string, unknown>>(text: string, values: readonly unknown[] = []): Row[] {
    return this.call({ text, values }).rows as Row[];
  }

  /** Runs one statement and returns how many rows it changed. */
  run(text: string, values: readonly unknown[] = []): number {
    return this.call({ text, values }).rowCount ?? 0;
  }

  /** Closes the connection and stops the worker. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      this.call({ end: true });
    } catch {
      // Closing a broken connection: nothing left to release but the thread.
    }
    this.closed = true;
    await this.worker.terminate();
  }

  private call(message: { text?: string; values?: readonly unknown[]; end?: boolean }): Reply {
    if (this.closed) throw new Error("the PostgreSQL store is closed");
    Atomics.store(this.signal, 0, 0);
    this.worker.postMessage(message);
    if (Atomics.wait(this.signal, 0, 0, this.timeoutMs) === "timed-out") {
      throw new SyncQueryError(`PostgreSQL did not answer within ${this.timeoutMs} ms`, undefined);
    }
    const received = receiveMessageOnPort(this.port);
    const reply = received?.message as Reply | undefined;
    if (!reply) throw new SyncQueryError("PostgreSQL query worker sent no answer", undefined);
    if (reply.error) throw new SyncQueryError(reply.error.message, reply.error.code);
    return reply;
  }
}
