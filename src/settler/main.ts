import { randomUUID } from "node:crypto";
import os from "node:os";
import { createWalletClient, formatGwei, http } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { checkDeployment } from "../chain/checkDeployment";
import { createChainClient } from "../chain/client";
import { viemChain } from "../chain/viemChain";
import { ChannelWatcher } from "../chain/watcher";
import { formatDollars } from "../protocol/price";
import {
  CONFIG_ENV,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  loadSettleConfig,
  PAYEE_ADDRESS_ENV,
  PAYEE_KEY_ENV,
  SETTLER_KEY_ENV,
  type ServerConfig,
  type SettleConfig,
  type SettlerPolicy,
} from "../shared/config";
import { formatFailure } from "../shared/failure";
import { createLogger, type Logger } from "../shared/log";
import { openPgStore } from "../store/postgres";
import { openSqliteStore } from "../store/sqlite";
import type { PaymentStore } from "../store/types";
import { TransactionSender } from "../chain/sender";
import { DutyLease } from "./lease";
import { Settler, type BatchReport, type PassSummary } from "./settler";

/**
 * Entry point of `paychan settle` and `npm run settler`: claims the vouchers the server accepted,
 * in batches, from the same configuration file and database as the server.
 *
 * - `paychan settle --config <file>`: reconciles the store with the chain, then claims on a
 *   schedule (`settler.intervalSec`), and at once when a payer asks to withdraw (the settler
 *   follows the chain with its own watcher, cursor `settler:<chainId>:<contract>:<payee>`, so it
 *   does not depend on the server running). Stops on SIGINT/SIGTERM after the run in progress.
 * - `paychan settle --config <file> --now`: one watcher sync, one reconcile, one pass, then exits.
 *
 * Every batch sent is printed on stdout as one JSON line (amounts and costs as decimal strings);
 * logs go to stderr. Like the server, it needs the chain at start: an unreachable RPC endpoint, a
 * wrong chain or an address that is not a PaymentChannels contract is said on stderr in one line
 * with a fix (`paychan settle: …` / `  fix: …`, no stack unless PAYCHAN_DEBUG=1). Exit codes: 0
 * done, 1 start-up failed or a batch could not be sent, 2 usage or configuration errors.
 *
 * Configuration: the server's file and its optional "settler" section, read by loadSettleConfig
 * (src/shared/config.ts; every field and default in docs/config.md). With --now, a pass that
 * claims nothing says why on stderr.
 */

/** A batch report as one JSON object: bigints as decimal strings. */
export function reportJson(report: BatchReport): string {
  return JSON.stringify(report, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
}

/** Options of {@link startSettler}. */
export interface StartSettlerOptions {
  /** Environment holding the keys, when `config` is a file name. Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Where the settler logs (as `component: "settler"`). Default {@link createLogger}(). */
  readonly logger?: Logger;
  /** Called with each claim batch once it is confirmed. */
  readonly onBatch?: (report: BatchReport) => void;
}

/** A batch settler running in this process, from {@link startSettler}. */
export interface RunningSettler {
  readonly config: SettleConfig;
  /** The settler itself: its `metrics`, `runOnce()` for a pass now. */
  readonly settler: Settler;
  /** Stops scheduling, waits for a claim in flight, stops the watcher and closes the store. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs the batch settler inside this process, as `paychan settle` does in its own: checks the RPC
 * endpoint and the contract, reconciles the store with the chain, then claims on the schedule of
 * the "settler" section, and at once when a payer asks to withdraw. `config` is the server's
 * configuration file (the one `loadConfig` reads) or its already loaded settler view.
 *
 * A seller who serves paid requests with the `paywall` middleware runs this next to it (or runs
 * `paychan settle` beside the server): without a settler, accepted vouchers are never claimed,
 * and a payer who exits takes back what they paid for. Throws {@link ConfigError} for a bad
 * configuration, and the first error when the chain or the store cannot be reached.
 *
 * ```ts
 * const settler = await startSettler("paychan.config.json");
 * process.on("SIGTERM", () => void settler.stop());
 * ```
 */
export async function startSettler(
  config: string | SettleConfig,
  options: StartSettlerOptions = {},
): Promise<RunningSettler> {
  const settleConfig = typeof config === "string" ? loadSettleConfig(config, options.env ?? process.env) : config;
  const parts = await openSettler(settleConfig, options.logger ?? createLogger(), "scheduled", options.onBatch);
  const { settler, logger, store } = parts;
  let watcher: ChannelWatcher | undefined;
  const run = async (): Promise<void> => {
    await settler.start();
    watcher = await parts.createWatcher();
    if (watcher) {
      watcher.on("withdrawalRequested", (record, info) => {
        logger.info("withdrawal requested; claiming now", { channelId: record.channelId, confirmed: info.confirmed });
        settler.claimUrgently();
      });
      watcher.on("error", (error) => logger.warn("chain watcher poll failed", { err: error }));
      watcher.start();
    }
  };
  const halt = async (): Promise<void> => {
    await watcher?.stop().catch(() => undefined);
    watcher = undefined;
    await settler.stop().catch(() => undefined);
  };

  if (store.acquireLease && store.releaseLease) {
    // Several instances share the store: one of them settles and watches for withdrawals at a
    // time, and another takes over when its lease runs out (docs/scaling.md).
    const { network, contract, payee } = settleConfig.server;
    const lease = new DutyLease({
      store: { acquireLease: store.acquireLease.bind(store), releaseLease: store.releaseLease.bind(store) },
      name: `settler:${network.chainId}:${contract.toLowerCase()}:${payee.toLowerCase()}`,
      holder: `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      ttlMs: settleConfig.server.database.leaseMs,
      onAcquired: async () => {
        logger.info("settler duty taken");
        await run();
        // A withdrawal its last holder saw may be waiting: claim what is urgent at once.
        void settler.runOnce();
      },
      onLost: async () => {
        logger.warn("settler duty lost; stopping claims");
        await halt();
      },
      onError: (error) => logger.warn("settler lease problem", { err: error }),
    });
    lease.start();
    return running(() => lease.stop());
  }

  try {
    await run();
  } catch (error) {
    await halt();
    await parts.close();
    throw error;
  }
  return running(halt);

  /** The handle; `stop` ends the duty with `end`, then closes everything, once. */
  function running(end: () => Promise<void>): RunningSettler {
    let stopping: Promise<void> | undefined;
    const stop = async () => {
      await end();
      await parts.close();
    };
    return { config: settleConfig, settler, stop: () => (stopping ??= stop()) };
  }
}

/** What {@link openSettler} assembled; `close` stops the settler and its watchers, then closes the store. */
interface SettlerParts {
  readonly settler: Settler;
  readonly store: PaymentStore;
  readonly logger: Logger;
  /** The settler's watcher (when the section asks for one), resuming from the stored cursor. */
  createWatcher(): Promise<ChannelWatcher | undefined>;
  close(): Promise<void>;
}

/**
 * Checks the RPC endpoint and the contract, opens the store and builds the settler (and its
 * watcher when the section asks for one), not yet running.
 */
async function openSettler(
  config: SettleConfig,
  baseLogger: Logger,
  mode: "once" | "scheduled",
  onBatch: ((report: BatchReport) => void) | undefined,
): Promise<SettlerParts> {
  const logger = baseLogger.child({ component: "settler" });
  const { server, settler: settings } = config;
  const { network } = server;
  const chain = viemChain(network, server.rpcUrl);
  const publicClient = createChainClient({ url: server.rpcUrl, chain });

  await checkDeployment(publicClient, { network, rpcUrl: server.rpcUrl, contract: server.contract });

  const store: PaymentStore = server.database.url
    ? await openPgStore({ url: server.database.url })
    : openSqliteStore({ path: server.database.path, durable: server.database.durable });
  const watchers: ChannelWatcher[] = [];
  let settler: Settler | undefined;
  const close = async (): Promise<void> => {
    for (const watcher of watchers) await watcher.stop().catch(() => undefined);
    await settler?.stop().catch(() => undefined);
    await store.close().catch(() => undefined);
  };
  try {
    const account = privateKeyToAccount(config.senderKey);
    const walletClient = createWalletClient({ account, chain, transport: http(server.rpcUrl) });
    const sender = new TransactionSender({
      publicClient,
      walletClient,
      account,
      chain,
      confirmations: server.confirmations,
      pollIntervalMs: Math.min(server.pollIntervalMs, 1_000),
      replaceAfterMs: settings.replaceAfterMs,
      feeBumpPercent: settings.feeBumpPercent,
      timeoutMs: settings.sendTimeoutMs,
      onRetry: (cause, error) => logger.debug("RPC call failed; retrying", { cause, err: error }),
    });
    settler = new Settler({
      publicClient,
      sender,
      store,
      contract: server.contract,
      policy: settings.policy,
      opStack: network.opStack,
      intervalSec: settings.intervalSec,
      onBatch: (report) => {
        onBatch?.(report);
        logger.info("claim batch confirmed", { ...report });
      },
      onError: (cause, error) => logger.warn("settler problem", { cause, err: error }),
    });
  } catch (error) {
    await close();
    throw error;
  }

  logger.info("paychan settler starting", {
    network: network.name,
    contract: server.contract,
    payee: server.payee,
    sender: config.sender,
    mode,
    intervalSec: settings.intervalSec,
  });
  const createSettlerWatcher = async (): Promise<ChannelWatcher | undefined> => {
    if (!settings.watch) return undefined;
    const watcher = await createWatcher(server, store, publicClient, logger);
    watchers.push(watcher);
    return watcher;
  };
  return { settler, store, logger, close, createWatcher: createSettlerWatcher };
}

/**
 * Why a pass claimed nothing, in one sentence: no channel owes anything, or how many channels wait
 * for which threshold, the gas price, or a claim that failed (its warning is logged).
 */
export function idlePassReason(pass: PassSummary | undefined, policy: SettlerPolicy, decimals: number): string {
  if (!pass || pass.candidates === 0) return "nothing claimed: no channel has an unclaimed voucher";
  const one = (n: number, singular: string, plural: string) => (n === 1 ? singular : plural);
  const dollars = (atomic: bigint) => formatDollars(atomic, decimals);
  const reasons = [
    `${pass.candidates} ${one(pass.candidates, "channel holds", "channels hold")} ${dollars(pass.unclaimed)} unclaimed`,
  ];
  const waiting = pass.candidates - pass.selected - pass.deferredForGas;
  if (waiting > 0) {
    reasons.push(
      `${waiting} ${one(waiting, "is", "are")} below settler.minUnclaimed (${dollars(policy.minUnclaimed)}) and ` +
        `younger than settler.maxAgeSec (${policy.maxAgeSec} s), and ${one(waiting, "is", "are")} claimed once ` +
        `${one(waiting, "it reaches", "they reach")} either or ${one(waiting, "its payer asks", "their payers ask")} to withdraw`,
    );
  }
  if (pass.deferredForGas > 0) {
    const ceiling = policy.maxGasPriceWei === undefined ? "" : ` (${formatGwei(policy.maxGasPriceWei)} gwei)`;
    reasons.push(
      `${pass.deferredForGas} ${one(pass.deferredForGas, "waits", "wait")} for the gas price to fall to settler.maxGasPriceGwei${ceiling}`,
    );
  }
  if (pass.selected > 0) {
    reasons.push(`${pass.selected} could not be claimed this time (see the warnings above)`);
  }
  return `nothing claimed: ${reasons.join("; ")}`;
}

export interface SettleOptions {
  /** One pass, then exit. */
  readonly now?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /** Where reports go, one JSON line each. Default process.stdout. */
  readonly stdout?: { write(text: string): unknown };
  /** Where configuration errors go. Default process.stderr. */
  readonly stderr?: { write(text: string): unknown };
  /** Signals that stop the scheduled settler. Default SIGINT and SIGTERM. */
  readonly signals?: readonly NodeJS.Signals[];
  /** Called once the scheduled settler runs (tests). */
  readonly onStarted?: (settler: Settler) => void;
  /** Stops the scheduled settler when aborted (used when it runs inside the server process). */
  readonly abort?: AbortSignal;
}

/** Runs the settler described by `configPath`; resolves with the exit code, never rejects. */
export async function settle(configPath: string, options: SettleOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  let config: SettleConfig;
  try {
    config = loadSettleConfig(configPath, env);
  } catch (error) {
    stderr.write(`paychan: ${error instanceof ConfigError ? error.message : String(error)}\n`);
    return 2;
  }
  const baseLogger = options.logger ?? createLogger();
  const { network, rpcUrl } = config.server;
  // What failed and how to fix it, for the human who started it: no stack (PAYCHAN_DEBUG=1 adds it).
  const fail = (error: unknown): number => {
    stderr.write(formatFailure("paychan settle", error, { rpc: { network, rpcUrl } }, env));
    return 1;
  };
  const logger = baseLogger.child({ component: "settler" });
  const onBatch = (report: BatchReport) => stdout.write(reportJson(report) + "\n");

  if (options.now) {
    let parts: SettlerParts;
    try {
      parts = await openSettler(config, baseLogger, "once", onBatch);
    } catch (error) {
      return fail(error);
    }
    try {
      // Fresh channel records first, so a pending withdrawal is seen as urgent.
      await (await parts.createWatcher())?.syncNow();
      await parts.settler.reconcile();
      const reports = await parts.settler.runOnce();
      if (reports.length === 0) {
        const { policy } = config.settler;
        stderr.write(
          `paychan settle: ${idlePassReason(parts.settler.lastPass, policy, config.server.token.decimals)}\n`,
        );
      }
      const { failures } = parts.settler.metrics;
      return (failures.send ?? 0) + (failures.reverted ?? 0) > 0 ? 1 : 0;
    } catch (error) {
      logger.error("paychan settler failed", { err: error });
      return 1;
    } finally {
      await parts.close();
    }
  }

  let running: RunningSettler;
  try {
    running = await startSettler(config, { logger: baseLogger, onBatch });
  } catch (error) {
    return fail(error);
  }
  options.onStarted?.(running.settler);
  await new Promise<void>((resolve) => {
    const signals = options.signals ?? (["SIGINT", "SIGTERM"] as const);
    const onSignal = (signal: NodeJS.Signals) => {
      logger.info("stopping", { signal });
      for (const s of signals) process.off(s, onSignal);
      resolve();
    };
    for (const s of signals) process.on(s, onSignal);
    const onAbort = () => {
      for (const s of signals) process.off(s, onSignal);
      resolve();
    };
    if (options.abort?.aborted) onAbort();
    else options.abort?.addEventListener("abort", onAbort, { once: true });
  });
  await running.stop();
  return 0;
}

/**
 * The settler's own watcher: the server's logic under its own cursor, so withdrawal requests
 * reach the settler whether or not the server runs. Both write the same chain state to the store.
 */
async function createWatcher(
  server: ServerConfig,
  store: PaymentStore,
  client: ReturnType<typeof createChainClient>,
  logger: Logger,
): Promise<ChannelWatcher> {
  const { network } = server;
  const suffix = `${network.chainId}:${server.contract.toLowerCase()}:${server.payee.toLowerCase()}`;
  const cursorKey = `settler:${suffix}`;
  let fromBlock: bigint | undefined;
  if (server.fromBlock !== "latest") fromBlock = server.fromBlock;
  else if (store.getCursor(cursorKey) === undefined) {
    // First start without a deploy block: continue from the server's watcher (everything before
    // its cursor is in the store already), else from the safe head, as the server does; the
    // channels in the store are followed from there.
    const serverCursor = store.getCursor(`watcher:${suffix}`);
    if (serverCursor !== undefined) fromBlock = serverCursor + 1n;
    else {
      const head = await client.getBlockNumber();
      const confirmations = BigInt(server.confirmations);
      fromBlock = head > confirmations ? head - confirmations : 1n;
    }
  }
  return new ChannelWatcher({
    client,
    contract: server.contract,
    payee: server.payee,
    chainId: network.chainId,
    confirmations: server.confirmations,
    store,
    pollIntervalMs: server.pollIntervalMs,
    ...(fromBlock !== undefined ? { fromBlock } : {}),
    cursorKey,
    logger: logger.child({ component: "settler-watcher" }),
  });
}

/** Parses `[--config <file>] [--now]`. */
export function parseSettleArgs(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { configPath: string; now: boolean } | { help: true } | { error: string } {
  let configPath: string | undefined;
  let now = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") return { help: true };
    if (arg === "--now") now = true;
    else if (arg === "--config" || arg === "-c") {
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
  return { configPath: configPath ?? env[CONFIG_ENV] ?? DEFAULT_CONFIG_FILE, now };
}

/** Usage text of the settle command. */
export const SETTLE_USAGE = `Usage: paychan settle [--config <file>] [--now]

Claims the vouchers the server accepted, in batches (claimBatch), using the server's config file
<file> (default: $${CONFIG_ENV} or ./${DEFAULT_CONFIG_FILE}) and its optional "settler" section.
Runs on a schedule, and at once when a payer asks to withdraw; with --now, runs one pass and exits.
Each batch sent is printed on stdout as a JSON line; a --now pass that claims nothing says why on
stderr. By default a channel is claimed once it holds $1 unclaimed (settler.minUnclaimed) or its
oldest unclaimed voucher is a day old (settler.maxAgeSec); every setting is in docs/config.md.

Environment:
  ${SETTLER_KEY_ENV}  key that sends the claims and pays their gas (fallback ${PAYEE_KEY_ENV})
  ${PAYEE_ADDRESS_ENV}        payee whose channels are claimed (default: the payee key's, else the settler key's address)
  PAYCHAN_DATABASE_URL         PostgreSQL store shared with the servers; one settler at a time holds its lease
  PAYCHAN_LOG_LEVEL            debug | info | warn | error | silent (default info)
  <NETWORK>_RPC_URL            RPC endpoint when the config has no rpcUrl (e.g. BASE_SEPOLIA_RPC_URL)
`;

/** `node -r ./bin/register.js src/settler/main.ts [--config <file>] [--now]`; also `paychan settle`. */
export async function main(args: readonly string[]): Promise<number> {
  const parsed = parseSettleArgs(args);
  if ("help" in parsed) {
    process.stdout.write(SETTLE_USAGE);
    return 0;
  }
  if ("error" in parsed) {
    process.stderr.write(`paychan settle: ${parsed.error}\n\n${SETTLE_USAGE}`);
    return 2;
  }
  return settle(parsed.configPath, { now: parsed.now });
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // Keep-alive sockets of the RPC client may hold the loop open a few seconds: do not wait.
    setTimeout(() => process.exit(code), 1_000).unref();
  });
}
