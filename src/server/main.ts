import { createPaymentServer, type PaymentServer } from "./app";
import { CONFIG_ENV, ConfigError, DEFAULT_CONFIG_FILE, loadConfig } from "../shared/config";
import { formatFailure } from "../shared/failure";
import { createLogger, type Logger } from "../shared/log";

/**
 * Entry point of `paychan server` and `npm run server`: load the config, start, and on
 * SIGINT/SIGTERM stop gracefully (stop accepting, drain in-flight requests, stop the watcher,
 * flush and close the store). A second signal during shutdown exits at once.
 *
 * The chain must be reachable at start: the server checks the RPC endpoint and the contract
 * before it listens, and without them it does not start (it could not tell a withdrawing channel
 * from a healthy one, nor where to start following the chain). What failed and how to fix it go
 * to stderr as `paychan server: <what failed>` and `  fix: <what to do>`, with no stack trace
 * (`PAYCHAN_DEBUG=1` adds it). Once running, an RPC outage is retried with backoff and shown on
 * the health endpoint; vouchers of channels already known keep being accepted.
 *
 * Exit codes: 0 after a graceful stop, 1 when start-up (chain unreachable, wrong chain, not a
 * PaymentChannels contract, port in use) or shutdown failed, 2 for usage and configuration errors.
 */

export interface ServeOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /** Where human-readable start-up errors go. Default process.stderr. */
  readonly stderr?: { write(text: string): unknown };
  /** Called once the server listens (tests, embedding). */
  readonly onStarted?: (server: PaymentServer) => void;
  /** Signals that trigger a graceful stop. Default SIGINT and SIGTERM. */
  readonly signals?: readonly NodeJS.Signals[];
}

/**
 * Runs the server described by `configPath` until a signal stops it. Resolves with the exit
 * code once everything is closed; never rejects.
 */
export async function serve(configPath: string, options: ServeOptions = {}): Promise<number> {
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  let config;
  try {
    config = loadConfig(configPath, env);
  } catch (error) {
    // Configuration problems are for a human at a terminal: plain text, every issue listed.
    stderr.write(`paychan: ${error instanceof ConfigError ? error.message : String(error)}\n`);
    return 2;
  }
  const logger = options.logger ?? createLogger();

  let server: PaymentServer | undefined;
  try {
    server = await createPaymentServer(config, { logger });
    await server.start();
  } catch (error) {
    await server?.stop().catch(() => undefined);
    // For the human who started it: one line of what failed, one of how to fix it.
    stderr.write(
      formatFailure("paychan server", error, { rpc: { network: config.network, rpcUrl: config.rpcUrl } }, env),
    );
    return 1;
  }
  options.onStarted?.(server);
  const running = server;

  return new Promise<number>((resolve) => {
    const signals = options.signals ?? (["SIGINT", "SIGTERM"] as const);
    let exitCode = 0;
    let stopping = false;
    const shutdown = (reason: string, code: number) => {
      if (stopping) {
        // Second signal: the operator insists. Queued writes are fsync'd per batch, so what was
        // answered as paid is already on disk; only in-flight responses are lost.
        logger.warn("second stop request; exiting now", { reason });
        process.exit(code || 130);
      }
      stopping = true;
      exitCode = code;
      logger.info("shutting down", { reason });
      running.stop().then(
        () => finish(),
        (error: unknown) => {
          logger.error("shutdown failed", { err: error });
          exitCode = 1;
          finish();
        },
      );
    };
    const onSignal = (signal: NodeJS.Signals) => shutdown(signal, 0);
    const onUncaught = (error: unknown) => {
      logger.error("uncaught exception; stopping", { err: error });
      shutdown("uncaughtException", 1);
    };
    const onUnhandled = (error: unknown) => logger.error("unhandled promise rejection", { err: error });
    const finish = () => {
      for (const signal of signals) process.off(signal, onSignal);
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUnhandled);
      resolve(exitCode);
    };
    for (const signal of signals) process.on(signal, onSignal);
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUnhandled);
  });
}

/** Parses `--config <file>` / `--config=<file>` / `-c <file>`; the rest is an error. */
export function parseServeArgs(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { configPath: string } | { help: true } | { error: string } {
  let configPath: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") return { help: true };
    if (arg === "--config" || arg === "-c") {
      const value = args[++i];
      if (value === undefined || value.startsWith("-")) return { error: `${arg} needs a file name` };
      configPath = value;
    } else if (arg.startsWith("--config=")) {
      configPath = arg.slice("--config=".length);
      if (configPath === "") return { error: "--config= needs a file name" };
    } else {
      return { error: `unknown argument "${arg}"` };
    }
  }
  return { configPath: configPath ?? env[CONFIG_ENV] ?? DEFAULT_CONFIG_FILE };
}

/** Usage text of the server command. */
export const SERVE_USAGE = `Usage: paychan server [--config <file>]

Runs the paying reverse proxy described by <file> (default: $${CONFIG_ENV} or ./${DEFAULT_CONFIG_FILE}).

Environment:
  PAYCHAN_PAYEE_PRIVATE_KEY    receipt signing key; its address is the payee (required)
  PAYCHAN_PAYEE_ADDRESS        payee address, if channels pay another address than the receipt key's
  PAYCHAN_RELAYER_PRIVATE_KEY  enables the gasless open/top-up relay (pays its gas)
  PAYCHAN_DATABASE_URL         PostgreSQL store shared by several instances (docs/scaling.md)
  PAYCHAN_LOG_LEVEL            debug | info | warn | error | silent (default info)
  PAYCHAN_DEBUG                1: a start-up failure also prints its stack trace
  <NETWORK>_RPC_URL            RPC endpoint when the config has no rpcUrl (e.g. BASE_SEPOLIA_RPC_URL)

The RPC endpoint must answer and config.contract must be a PaymentChannels contract when the
server starts; otherwise it prints what failed and how to fix it, and exits.
Exit codes: 0 stopped by a signal, 1 start-up failed (chain unreachable, wrong chain, not a
PaymentChannels contract, port in use) or shutdown failed, 2 usage or configuration error.
`;

/** `node -r ./bin/register.js src/server/main.ts [--config <file>]`; also `paychan server`. */
export async function main(args: readonly string[]): Promise<number> {
  const parsed = parseServeArgs(args);
  if ("help" in parsed) {
    process.stdout.write(SERVE_USAGE);
    return 0;
  }
  if ("error" in parsed) {
    process.stderr.write(`paychan server: ${parsed.error}\n\n${SERVE_USAGE}`);
    return 2;
  }
  return serve(parsed.configPath);
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Keep-alive sockets of the RPC client may hold the loop open a few seconds; everything
    // that matters is closed, so do not wait for them.
    setTimeout(() => process.exit(code), 1_000).unref();
  });
}
