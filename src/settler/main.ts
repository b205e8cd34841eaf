import { readFileSync } from "node:fs";
import path from "node:path";
import { createWalletClient, http, parseGwei, type Address, type Chain, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { arbitrumSepolia, base, baseSepolia, hardhat, optimism, optimismSepolia } from "viem/chains";
import { checkDeployment } from "../chain/checkDeployment";
import { createChainClient } from "../chain/client";
import type { NetworkName } from "../chain/networks";
import { ChannelWatcher } from "../chain/watcher";
import { toAtomic } from "../protocol/price";
import { MAX_AMOUNT } from "../protocol/voucher";
import {
  CONFIG_ENV,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  PAYEE_ADDRESS_ENV,
  PAYEE_KEY_ENV,
  parseConfig,
  RELAYER_KEY_ENV,
  type ServerConfig,
} from "../shared/config";
import { formatFailure } from "../shared/failure";
import { createLogger, type Logger } from "../shared/log";
import { openSqliteStore } from "../store/sqlite";
import type { SettlerPolicy } from "./policy";
import { TransactionSender } from "../chain/sender";
import { Settler, type BatchReport } from "./settler";

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
 * Configuration: the server's file, plus an optional "settler" section:
 *
 * ```json
 * "settler": {
 *   "minUnclaimed": "$1",    // claim a channel once this much is unclaimed ("$x" or atomic units)
 *   "maxAgeSec": 86400,      // ...or once its oldest unclaimed voucher is this old
 *   "maxBatchSize": 200,     // channels per claimBatch transaction
 *   "maxGasPriceGwei": 0.5,  // routine claims wait above this gas price (urgent ones never wait)
 *   "intervalSec": 300,      // between scheduled passes
 *   "replaceAfterMs": 60000, // a claim not mined after this long is re-sent with higher fees
 *   "feeBumpPercent": 20,    // fee increase per replacement (at least 10)
 *   "sendTimeoutMs": 600000, // a claim without a final receipt after this long is given up (and retried)
 *   "watch": true            // follow withdrawal requests with a watcher of its own
 * }
 * ```
 *
 * The server's loader (src/shared/config.ts) must list "settler" among its top-level keys for one
 * file to serve both; without the section, every setting takes its default.
 *
 * Environment: PAYCHAN_SETTLER_PRIVATE_KEY pays the claims' gas (fallback PAYCHAN_PAYEE_PRIVATE_KEY;
 * the payee's tokens go to the payee whoever sends the claim). The payee whose channels are
 * followed is PAYCHAN_PAYEE_ADDRESS, else the address of PAYCHAN_PAYEE_PRIVATE_KEY, else the
 * settler key's address.
 */

/** Environment variable: the key that sends claims and pays their gas. */
export const SETTLER_KEY_ENV = "PAYCHAN_SETTLER_PRIVATE_KEY";

/** Defaults of the "settler" section. */
export const SETTLER_DEFAULTS = {
  minUnclaimed: "$1",
  maxAgeSec: 24 * 3600,
  maxBatchSize: 200,
  intervalSec: 300,
  replaceAfterMs: 60_000,
  feeBumpPercent: 20,
  sendTimeoutMs: 10 * 60_000,
  watch: true,
} as const;

/** The validated "settler" section. */
export interface SettlerSettings {
  readonly policy: SettlerPolicy;
  readonly intervalSec: number;
  readonly replaceAfterMs: number;
  readonly feeBumpPercent: number;
  readonly sendTimeoutMs: number;
  readonly watch: boolean;
}

/** Everything `paychan settle` needs. */
export interface SettleConfig {
  /** The server's configuration (network, RPC, contract, database, payee, confirmations). */
  readonly server: ServerConfig;
  readonly settler: SettlerSettings;
  /** The claim sender's key; not enumerable, so logging the config does not print it. */
  readonly senderKey: Hex;
  readonly sender: Address;
}

const SETTLER_KEYS = [
  "minUnclaimed",
  "maxAgeSec",
  "maxBatchSize",
  "maxGasPriceGwei",
  "intervalSec",
  "replaceAfterMs",
  "feeBumpPercent",
  "sendTimeoutMs",
  "watch",
] as const;

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** Reads and validates the configuration file for the settler; throws {@link ConfigError}. */
export function loadSettleConfig(file: string, env: NodeJS.ProcessEnv = process.env): SettleConfig {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : String(error);
    throw new ConfigError([`cannot read ${absolute}: ${reason}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`not valid JSON: ${(error as Error).message}`], absolute);
  }
  return parseSettleConfig(raw, { env, baseDir: path.dirname(absolute), source: absolute });
}

/** Validates a parsed configuration object for the settler; throws {@link ConfigError} listing every problem. */
export function parseSettleConfig(
  raw: unknown,
  options: { env?: NodeJS.ProcessEnv; baseDir?: string; source?: string } = {},
): SettleConfig {
  const env = options.env ?? process.env;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(["config: must be a JSON object"], options.source);
  }
  const issues: string[] = [];
  const ownKey = Boolean(env[SETTLER_KEY_ENV]);
  let senderKey = ownKey ? privateKey(issues, SETTLER_KEY_ENV, env[SETTLER_KEY_ENV]) : undefined;

  // The server's part, through the server's own validation. The settler signs no receipts and
  // runs no relay: without a payee key the payee defaults to the settler key's address, and the
  // relay section (which would demand a relayer key) is not its business.
  const { settler: section, relay: _relay, ...serverPart } = raw as Record<string, unknown>;
  const serverEnv: NodeJS.ProcessEnv = { ...env };
  delete serverEnv[RELAYER_KEY_ENV];
  if (!serverEnv[PAYEE_KEY_ENV] && senderKey) serverEnv[PAYEE_KEY_ENV] = senderKey;
  let server: ServerConfig | undefined;
  try {
    server = parseConfig(serverPart, { env: serverEnv, baseDir: options.baseDir, source: options.source });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    for (const issue of error.issues) {
      // A missing payee key only matters as the claim sender's key, which is reported here.
      if (!issue.startsWith(`environment ${PAYEE_KEY_ENV}: required`)) issues.push(issue);
      else if (!ownKey)
        issues.push(`environment ${SETTLER_KEY_ENV}: required (or ${PAYEE_KEY_ENV}); the key that sends claims`);
    }
  }
  // Without a key of its own the settler sends with the payee key, validated by parseConfig.
  if (!ownKey && server) senderKey = server.secrets.payeeKey;
  const settler = parseSettlerSection(issues, section, server);

  if (issues.length > 0 || !server || !settler || !senderKey) throw new ConfigError(issues, options.source);
  const config = { server, settler, senderKey, sender: privateKeyToAccount(senderKey).address };
  Object.defineProperty(config, "senderKey", { enumerable: false });
  return config;
}

function parseSettlerSection(
  issues: string[],
  value: unknown,
  server: ServerConfig | undefined,
): SettlerSettings | undefined {
  if (value !== undefined && (typeof value !== "object" || value === null || Array.isArray(value))) {
    issues.push(`config.settler: must be an object, got ${JSON.stringify(value)}`);
    return undefined;
  }
  const s = (value ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(s)) {
    if (!(SETTLER_KEYS as readonly string[]).includes(key)) {
      issues.push(`config.settler.${key}: unknown setting; known: ${SETTLER_KEYS.join(", ")}`);
    }
  }
  const before = issues.length;
  const integer = (key: (typeof SETTLER_KEYS)[number], min: number, max: number, fallback: number): number => {
    const v = s[key];
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      issues.push(`config.settler.${key}: must be a whole number in [${min}, ${max}], got ${JSON.stringify(v)}`);
      return fallback;
    }
    return v;
  };

  const decimals = server?.token.decimals ?? 6;
  let minUnclaimed = 0n;
  const rawMin = s.minUnclaimed ?? SETTLER_DEFAULTS.minUnclaimed;
  if (typeof rawMin === "number" && Number.isSafeInteger(rawMin) && rawMin >= 0) minUnclaimed = BigInt(rawMin);
  else if (typeof rawMin === "string") {
    try {
      minUnclaimed = toAtomic(rawMin, decimals);
    } catch (error) {
      issues.push(`config.settler.minUnclaimed: ${(error as Error).message}`);
    }
  } else {
    issues.push(`config.settler.minUnclaimed: must be "$<dollars>" or atomic units, got ${JSON.stringify(rawMin)}`);
  }
  if (minUnclaimed > MAX_AMOUNT) issues.push("config.settler.minUnclaimed: exceeds the largest channel amount");

  const maxAgeSec = integer("maxAgeSec", 1, 365 * 24 * 3600, SETTLER_DEFAULTS.maxAgeSec);
  // A claimBatch item costs about 12,000 gas: 1,000 items stay far below any block gas limit.
  const maxBatchSize = integer("maxBatchSize", 1, 1_000, SETTLER_DEFAULTS.maxBatchSize);
  let maxGasPriceWei: bigint | undefined;
  if (s.maxGasPriceGwei !== undefined) {
    const g = s.maxGasPriceGwei;
    const text = typeof g === "number" && Number.isFinite(g) && g > 0 ? String(g) : g;
    if (typeof text !== "string" || !/^\d+(\.\d{1,9})?$/.test(text) || /^0+(\.0+)?$/.test(text)) {
      issues.push(`config.settler.maxGasPriceGwei: must be a positive number of gwei, got ${JSON.stringify(g)}`);
    } else maxGasPriceWei = parseGwei(text);
  }
  const intervalSec = integer("intervalSec", 1, 24 * 3600, SETTLER_DEFAULTS.intervalSec);
  const replaceAfterMs = integer("replaceAfterMs", 1_000, 3_600_000, SETTLER_DEFAULTS.replaceAfterMs);
  const feeBumpPercent = integer("feeBumpPercent", 10, 1_000, SETTLER_DEFAULTS.feeBumpPercent);
  const sendTimeoutMs = integer("sendTimeoutMs", 10_000, 24 * 3_600_000, SETTLER_DEFAULTS.sendTimeoutMs);
  let watch: boolean = SETTLER_DEFAULTS.watch;
  if (s.watch !== undefined) {
    if (typeof s.watch !== "boolean") issues.push(`config.settler.watch: must be true or false`);
    else watch = s.watch;
  }
  // Withdrawal requests of channels the settler's watcher does not follow (and every request when
  // it does not watch) are noticed by the next scheduled pass: it must come well within the
  // shortest withdraw delay the server accepts.
  if (server && intervalSec * 3 > server.minWithdrawDelay) {
    issues.push(
      `config.settler.intervalSec: ${intervalSec} s leaves too little of the ${server.minWithdrawDelay} s ` +
        `minimum withdraw delay (config.minWithdrawDelay) to claim an exiting channel; use at most a third of it`,
    );
  }
  if (issues.length > before) return undefined;
  return {
    policy: { minUnclaimed, maxAgeSec, maxBatchSize, ...(maxGasPriceWei !== undefined ? { maxGasPriceWei } : {}) },
    intervalSec,
    replaceAfterMs,
    feeBumpPercent,
    sendTimeoutMs,
    watch,
  };
}

function privateKey(issues: string[], name: string, value: string | undefined): Hex | undefined {
  if (value === undefined || value === "") return undefined;
  // Never echo the value: it is a secret.
  const text = value.trim();
  const hex = /^0x[0-9a-fA-F]{64}$/.test(text) ? text : /^[0-9a-fA-F]{64}$/.test(text) ? `0x${text}` : undefined;
  if (!hex || BigInt(hex) === 0n || BigInt(hex) >= SECP256K1_N) {
    issues.push(`environment ${name}: must be a valid 32-byte hex secp256k1 private key`);
    return undefined;
  }
  return hex.toLowerCase() as Hex;
}

const VIEM_CHAINS: Readonly<Record<NetworkName, Chain>> = {
  base,
  "base-sepolia": baseSepolia,
  optimism,
  "optimism-sepolia": optimismSepolia,
  "arbitrum-sepolia": arbitrumSepolia,
  localhost: hardhat,
  hardhat,
};

/** A batch report as one JSON object: bigints as decimal strings. */
export function reportJson(report: BatchReport): string {
  return JSON.stringify(report, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value));
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
  const logger = (options.logger ?? createLogger()).child({ component: "settler" });
  const { server, settler: settings } = config;
  const { network } = server;
  const chain: Chain = { ...VIEM_CHAINS[network.name], rpcUrls: { default: { http: [server.rpcUrl] } } };
  const publicClient = createChainClient({ url: server.rpcUrl, chain });

  // What failed and how to fix it, for the human who started it: no stack (PAYCHAN_DEBUG=1 adds it).
  const fail = (error: unknown): number => {
    stderr.write(formatFailure("paychan settle", error, { rpc: { network, rpcUrl: server.rpcUrl } }, env));
    return 1;
  };
  try {
    await checkDeployment(publicClient, { network, rpcUrl: server.rpcUrl, contract: server.contract });
  } catch (error) {
    return fail(error);
  }

  const store = openSqliteStore({ path: server.database.path, durable: server.database.durable });
  let watcher: ChannelWatcher | undefined;
  let settler: Settler | undefined;
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
        stdout.write(reportJson(report) + "\n");
        logger.info("claim batch confirmed", { ...report });
      },
      onError: (cause, error) => logger.warn("settler problem", { cause, err: error }),
    });
    if (settings.watch) watcher = await createWatcher(server, store, publicClient, logger);

    logger.info("paychan settler starting", {
      network: network.name,
      contract: server.contract,
      payee: server.payee,
      sender: config.sender,
      mode: options.now ? "once" : "scheduled",
      intervalSec: settings.intervalSec,
    });

    if (options.now) {
      // Fresh channel records first, so a pending withdrawal is seen as urgent.
      await watcher?.syncNow();
      await settler.reconcile();
      await settler.runOnce();
      const { failures } = settler.metrics;
      return (failures.send ?? 0) + (failures.reverted ?? 0) > 0 ? 1 : 0;
    }

    await settler.start();
    const running = settler;
    if (watcher) {
      watcher.on("withdrawalRequested", (record, info) => {
        logger.info("withdrawal requested; claiming now", { channelId: record.channelId, confirmed: info.confirmed });
        running.claimUrgently();
      });
      watcher.on("error", (error) => logger.warn("chain watcher poll failed", { err: error }));
      watcher.start();
    }
    options.onStarted?.(running);
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
    return 0;
  } catch (error) {
    return fail(error);
  } finally {
    await watcher?.stop().catch(() => undefined);
    await settler?.stop().catch(() => undefined);
    await store.close().catch(() => undefined);
  }
}

/**
 * The settler's own watcher: the server's logic under its own cursor, so withdrawal requests
 * reach the settler whether or not the server runs. Both write the same chain state to the store.
 */
async function createWatcher(
  server: ServerConfig,
  store: ReturnType<typeof openSqliteStore>,
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
Each batch sent is printed on stdout as a JSON line.

Environment:
  ${SETTLER_KEY_ENV}  key that sends the claims and pays their gas (fallback ${PAYEE_KEY_ENV})
  ${PAYEE_ADDRESS_ENV}        payee whose channels are claimed (default: the payee key's, else the settler key's address)
  PAYCHAN_LOG_LEVEL            debug | info | warn | error | silent (default info)
  PAYCHAN_DEBUG                1: a start-up failure also prints its stack trace
  <NETWORK>_RPC_URL            RPC endpoint when the config has no rpcUrl (e.g. BASE_SEPOLIA_RPC_URL)

The RPC endpoint must answer and the contract must be a PaymentChannels contract at start;
otherwise it prints what failed and how to fix it, and exits.
Exit codes: 0 done (or stopped by a signal), 1 start-up failed or a claim could not be sent,
2 usage or configuration error.
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
