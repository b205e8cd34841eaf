import { readFileSync } from "node:fs";
import path from "node:path";
import { getAddress, isAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { findNetwork, NETWORKS, type NetworkInfo } from "../chain/networks";
import { MAX_PAYMENT_HEADER_BYTES, type Pricing } from "../protocol/headers";
import { toAtomic, type Price } from "../protocol/price";
import { MAX_AMOUNT } from "../protocol/voucher";

/**
 * The paychan server's configuration: a JSON file for everything public, the environment for
 * every secret (so the file can be committed and shared). {@link loadConfig} validates the whole
 * file at start-up and reports every problem at once, each with the JSON path it concerns.
 *
 * The file (see paychan.config.example.json; `//` comments are not allowed, JSON is strict):
 *
 * ```json
 * {
 *   "upstream": "http://127.0.0.1:3000",
 *   "listen": { "host": "0.0.0.0", "port": 8402 },
 *   "network": "base-sepolia",
 *   "contract": "0x…",
 *   "routes": { "GET /weather": "$0.001", "POST /llm": { "price": "$0.05", "pricing": "upto" }, "GET /": null }
 * }
 * ```
 *
 * Environment: PAYCHAN_PAYEE_PRIVATE_KEY (required; signs receipts, and its address is the payee
 * unless PAYCHAN_PAYEE_ADDRESS names another), PAYCHAN_RELAYER_PRIVATE_KEY (optional; enables the
 * gasless open/top-up relay), the network's RPC variable (e.g. BASE_SEPOLIA_RPC_URL) when the
 * file has no `rpcUrl`.
 */

/** How one route is paid: a price, or `null` for a free route. */
export type RoutePrice =
  Price | { readonly price: Price; readonly pricing?: Pricing; readonly description?: string } | null;

/**
 * Route table: keys are "METHOD /path" or "/path" (any method); a path ending in "/*" matches
 * every path below it. Values are prices ("$0.001", atomic units) or null for free routes.
 */
export type RouteTable = Readonly<Record<string, RoutePrice>>;

/** Default config file, relative to the working directory. */
export const DEFAULT_CONFIG_FILE = "paychan.config.json";
/** Environment variable naming the config file when no --config is given. */
export const CONFIG_ENV = "PAYCHAN_CONFIG";
/** Environment variable: receipt signing key; the payee address is derived from it by default. */
export const PAYEE_KEY_ENV = "PAYCHAN_PAYEE_PRIVATE_KEY";
/** Environment variable: payee address, when channels pay an address other than the receipt key's. */
export const PAYEE_ADDRESS_ENV = "PAYCHAN_PAYEE_ADDRESS";
/** Environment variable: key paying gas for gasless opens and top-ups. */
export const RELAYER_KEY_ENV = "PAYCHAN_RELAYER_PRIVATE_KEY";

/** The contract's bounds on a channel's withdraw delay (PaymentChannels.MIN/MAX_WITHDRAW_DELAY). */
export const CONTRACT_MIN_WITHDRAW_DELAY = 15 * 60;
export const CONTRACT_MAX_WITHDRAW_DELAY = 30 * 24 * 3600;

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** Defaults of every optional setting. */
export const CONFIG_DEFAULTS = {
  host: "127.0.0.1",
  port: 8402,
  decimals: 6,
  minDeposit: "$1",
  minWithdrawDelay: 24 * 3600,
  withdrawSafetyMarginSec: 3600,
  databasePath: "paychan.db",
  durable: true,
  fsync: "background" as const,
  retryWindowMs: 60_000,
  maxHeaderBytes: 16 * 1024,
  upstreamTimeoutMs: 30_000,
  forwardBeforeDurable: "safe",
  maxTimeoutSeconds: 60,
  healthPath: "/healthz",
  metricsPath: "/metrics",
  relayPath: "/paychan/relay",
  unmatchedRoutes: "reject",
  pollIntervalMs: 2_000,
} as const;

/** What happens to a request no route matches. */
export type UnmatchedPolicy = "reject" | "free";

/** Which paid requests go to the upstream while their voucher's fsync runs. */
export type ForwardBeforeDurable = "safe" | "never";

/** Secrets from the environment. `toJSON` and `util.inspect` redact the keys, so logging a config is safe. */
export class ServerSecrets {
  /** The receipt signer's private key. */
  readonly payeeKey: Hex;
  /** The relayer's private key, when the relay is enabled. */
  readonly relayerKey: Hex | undefined;

  constructor(payeeKey: Hex, relayerKey: Hex | undefined) {
    this.payeeKey = payeeKey;
    this.relayerKey = relayerKey;
    // Non-enumerable, so spreads and Object.keys never copy the keys around.
    Object.defineProperty(this, "payeeKey", { enumerable: false });
    Object.defineProperty(this, "relayerKey", { enumerable: false });
  }

  toJSON(): string {
    return "[redacted]";
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "ServerSecrets [redacted]";
  }
}

/** The validated configuration, with defaults applied and every value in its working type. */
export interface ServerConfig {
  /** Absolute path of the file it was read from, if any. */
  readonly source?: string;
  /** Base URL of the upstream API (path prefix included, no trailing slash). */
  readonly upstream: URL;
  readonly listen: { readonly host: string; readonly port: number };
  /** Public base URL of this server, for `resource.url` in 402s; default: from the Host header. */
  readonly publicUrl?: string;
  readonly network: NetworkInfo;
  readonly rpcUrl: string;
  readonly contract: Address;
  readonly token: {
    readonly address: Address;
    readonly decimals: number;
    /** EIP-712 domain of the token (for EIP-3009 authorizations). */
    readonly name: string;
    readonly version: string;
  };
  /** Route table, values checked (prices parse under the token's decimals). */
  readonly routes: RouteTable;
  readonly unmatchedRoutes: UnmatchedPolicy;
  readonly minDeposit: bigint;
  readonly minWithdrawDelay: number;
  readonly withdrawSafetyMarginSec: number;
  /** Blocks before the watcher acts on an event. */
  readonly confirmations: number;
  /** How often the watcher polls for new blocks. */
  readonly pollIntervalMs: number;
  /**
   * Where the watcher's first sync starts (later starts resume from the stored cursor): a block
   * number (the contract's deploy block), or "latest" to start at the head and learn older
   * channels on demand. Default 1 on local networks, "latest" elsewhere.
   */
  readonly fromBlock: bigint | "latest";
  /**
   * The SQLite file; `durable` false drops every fsync (benchmarks and tests only); `fsync` is
   * where a durable commit is fsynced: "background" (default, off the event loop) or "commit"
   * (inside SQLite's COMMIT, on the event loop). See SqliteStoreOptions.
   */
  readonly database: { readonly path: string; readonly durable: boolean; readonly fsync: "background" | "commit" };
  readonly retryWindowMs: number;
  /** Node's `maxHeaderSize`: total bytes of a request's header section. */
  readonly maxHeaderBytes: number;
  readonly upstreamTimeoutMs: number;
  /**
   * "safe" (default): paid GET/HEAD/OPTIONS requests reach the upstream while their voucher's
   * fsync runs, and their response is held until it returns; "never": only once it has returned.
   */
  readonly forwardBeforeDurable: ForwardBeforeDurable;
  readonly maxTimeoutSeconds: number;
  /** Built-in endpoints; null disables one. */
  readonly healthPath: string | null;
  readonly metricsPath: string | null;
  /** The gasless relay's base path (`<path>/open`, `<path>/topup`), or null when disabled. */
  readonly relay: { readonly path: string } | null;
  /** Where channels must pay. */
  readonly payee: Address;
  /** Address of the receipt key. */
  readonly receiptSigner: Address;
  /** Address of the relayer key, when the relay is enabled. */
  readonly relayer?: Address;
  readonly secrets: ServerSecrets;
}

/** Every problem found in a configuration, one line each. */
export class ConfigError extends Error {
  constructor(
    readonly issues: readonly string[],
    source?: string,
  ) {
    super(`invalid configuration${source ? ` (${source})` : ""}:\n${issues.map((issue) => `  - ${issue}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Reads, parses and validates a configuration file; throws {@link ConfigError}. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
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
  return parseConfig(raw, { env, baseDir: path.dirname(absolute), source: absolute });
}

export interface ParseOptions {
  /** Environment holding the secrets and RPC URLs. Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Directory relative paths (the database) are resolved against. Default the working directory. */
  readonly baseDir?: string;
  /** Named in error messages. */
  readonly source?: string;
}

const TOP_LEVEL_KEYS = [
  "$schema",
  // Read by the settler (src/settler/main.ts), which runs in the server process by default.
  "settler",
  "upstream",
  "listen",
  "publicUrl",
  "network",
  "rpcUrl",
  "contract",
  "token",
  "routes",
  "unmatchedRoutes",
  "minDeposit",
  "minWithdrawDelay",
  "withdrawSafetyMarginSec",
  "confirmations",
  "pollIntervalMs",
  "fromBlock",
  "database",
  "retryWindowMs",
  "maxHeaderBytes",
  "upstreamTimeoutMs",
  "forwardBeforeDurable",
  "maxTimeoutSeconds",
  "healthPath",
  "metricsPath",
  "relay",
] as const;

/** Validates a parsed configuration object; throws {@link ConfigError} listing every problem. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): ServerConfig {
  const env = options.env ?? process.env;
  const c = new Checker();
  if (!isRecord(raw)) throw new ConfigError(["config: must be a JSON object"], options.source);
  c.noUnknownKeys("config", raw, TOP_LEVEL_KEYS);

  const upstream = c.url("config.upstream", raw.upstream, { required: true });
  const listen = parseListen(c, raw.listen);
  const publicUrl = c.url("config.publicUrl", raw.publicUrl, { required: false });

  // The network decides defaults for the token, RPC variable and confirmations.
  let network: NetworkInfo | undefined;
  if (raw.network === undefined) c.issue("config.network: required; one of " + networkNames());
  else if (typeof raw.network !== "string" || !(network = findNetwork(raw.network))) {
    c.issue(`config.network: ${show(raw.network)} is not a known network; use one of ${networkNames()}`);
  }

  let rpcUrl: string | undefined;
  if (raw.rpcUrl !== undefined) rpcUrl = c.url("config.rpcUrl", raw.rpcUrl, { required: true })?.toString();
  else if (network) {
    const fromEnv = env[network.rpcEnv];
    if (fromEnv) rpcUrl = c.url(`environment ${network.rpcEnv}`, fromEnv, { required: true })?.toString();
    else if (network.local) rpcUrl = "http://127.0.0.1:8545";
    else c.issue(`config.rpcUrl: required (or set ${network.rpcEnv} in the environment) on network ${network.name}`);
  }

  const contract = c.address("config.contract", raw.contract, true);
  const token = parseToken(c, raw.token, network);
  const decimals = token?.decimals ?? CONFIG_DEFAULTS.decimals;
  const routes = parseRoutes(c, raw.routes, decimals);

  const unmatchedRoutes = c.oneOf("config.unmatchedRoutes", raw.unmatchedRoutes, ["reject", "free"] as const);
  const minDeposit = c.amount("config.minDeposit", raw.minDeposit ?? CONFIG_DEFAULTS.minDeposit, decimals);
  const minWithdrawDelay = c.integer("config.minWithdrawDelay", raw.minWithdrawDelay, {
    min: CONTRACT_MIN_WITHDRAW_DELAY,
    max: CONTRACT_MAX_WITHDRAW_DELAY,
    fallback: CONFIG_DEFAULTS.minWithdrawDelay,
    unit: "seconds",
    why: "the contract's withdraw delay bounds",
  });
  const withdrawSafetyMarginSec = c.integer("config.withdrawSafetyMarginSec", raw.withdrawSafetyMarginSec, {
    min: 0,
    max: CONTRACT_MAX_WITHDRAW_DELAY,
    fallback: CONFIG_DEFAULTS.withdrawSafetyMarginSec,
    unit: "seconds",
  });
  const confirmations = c.integer("config.confirmations", raw.confirmations, {
    min: 0,
    max: 1000,
    fallback: network?.confirmations ?? 0,
  });
  const pollIntervalMs = c.integer("config.pollIntervalMs", raw.pollIntervalMs, {
    min: 50,
    max: 600_000,
    fallback: CONFIG_DEFAULTS.pollIntervalMs,
    unit: "ms",
  });
  let fromBlock: bigint | "latest" = network && !network.local ? "latest" : 1n;
  if (raw.fromBlock === "latest") fromBlock = "latest";
  else if (raw.fromBlock !== undefined) {
    const text =
      typeof raw.fromBlock === "number" && Number.isSafeInteger(raw.fromBlock) ? String(raw.fromBlock) : raw.fromBlock;
    if (typeof text !== "string" || !/^[0-9]{1,20}$/.test(text)) {
      c.issue(`config.fromBlock: must be a block number or "latest", got ${show(raw.fromBlock)}`);
    } else fromBlock = BigInt(text);
  }
  const database = parseDatabase(c, raw.database, options.baseDir ?? process.cwd());
  const retryWindowMs = c.integer("config.retryWindowMs", raw.retryWindowMs, {
    min: 0,
    max: 24 * 3600 * 1000,
    fallback: CONFIG_DEFAULTS.retryWindowMs,
    unit: "ms",
  });
  const maxHeaderBytes = c.integer("config.maxHeaderBytes", raw.maxHeaderBytes, {
    // Room for a full PAYMENT-SIGNATURE plus ordinary headers; above 1 MiB is a memory-DoS knob.
    min: MAX_PAYMENT_HEADER_BYTES + 2048,
    max: 1024 * 1024,
    fallback: CONFIG_DEFAULTS.maxHeaderBytes,
    unit: "bytes",
  });
  const upstreamTimeoutMs = c.integer("config.upstreamTimeoutMs", raw.upstreamTimeoutMs, {
    min: 100,
    max: 3600 * 1000,
    fallback: CONFIG_DEFAULTS.upstreamTimeoutMs,
    unit: "ms",
  });
  const forwardBeforeDurable = c.oneOf("config.forwardBeforeDurable", raw.forwardBeforeDurable, [
    "safe",
    "never",
  ] as const);
  const maxTimeoutSeconds = c.integer("config.maxTimeoutSeconds", raw.maxTimeoutSeconds, {
    min: 1,
    max: 3600,
    fallback: CONFIG_DEFAULTS.maxTimeoutSeconds,
    unit: "seconds",
  });
  const healthPath = c.endpointPath("config.healthPath", raw.healthPath, CONFIG_DEFAULTS.healthPath);
  const metricsPath = c.endpointPath("config.metricsPath", raw.metricsPath, CONFIG_DEFAULTS.metricsPath);

  // Secrets.
  const payeeKey = c.privateKey(PAYEE_KEY_ENV, env[PAYEE_KEY_ENV], true);
  const relayerKey = c.privateKey(RELAYER_KEY_ENV, env[RELAYER_KEY_ENV], false);
  const receiptSigner = payeeKey ? privateKeyToAccount(payeeKey).address : undefined;
  let payee = receiptSigner;
  if (env[PAYEE_ADDRESS_ENV] !== undefined && env[PAYEE_ADDRESS_ENV] !== "") {
    payee = c.address(`environment ${PAYEE_ADDRESS_ENV}`, env[PAYEE_ADDRESS_ENV], true);
  }

  let relay: { path: string } | null = null;
  if (raw.relay === false || raw.relay === null) {
    relay = null;
  } else if (raw.relay === undefined) {
    // Offered exactly when a relayer key is configured: the key is the operator's opt-in.
    relay = relayerKey ? { path: CONFIG_DEFAULTS.relayPath } : null;
  } else if (!isRecord(raw.relay)) {
    c.issue(`config.relay: must be an object like { "path": "/paychan/relay" } or false, got ${show(raw.relay)}`);
  } else {
    c.noUnknownKeys("config.relay", raw.relay, ["path"]);
    const relayPath = c.endpointPath("config.relay.path", raw.relay.path ?? CONFIG_DEFAULTS.relayPath, "");
    if (!relayerKey) c.issue(`config.relay: the relay needs ${RELAYER_KEY_ENV} in the environment`);
    if (relayPath) relay = { path: relayPath.replace(/\/+$/, "") };
  }

  const builtIns = [healthPath, metricsPath, relay && `${relay.path}/open`, relay && `${relay.path}/topup`];
  const seen = new Set<string>();
  for (const p of builtIns) {
    if (p === null || p === "") continue;
    if (seen.has(p)) c.issue(`config: the built-in endpoint path ${p} is used twice`);
    seen.add(p);
  }

  if (c.issues.length > 0) throw new ConfigError(c.issues, options.source);
  // Every value below was checked above; the casts only restate what the checker guarantees.
  return {
    ...(options.source ? { source: options.source } : {}),
    upstream: upstream as URL,
    listen,
    ...(publicUrl ? { publicUrl: publicUrl.toString().replace(/\/+$/, "") } : {}),
    network: network as NetworkInfo,
    rpcUrl: rpcUrl as string,
    contract: contract as Address,
    token: token as ServerConfig["token"],
    routes: routes as RouteTable,
    unmatchedRoutes: unmatchedRoutes ?? CONFIG_DEFAULTS.unmatchedRoutes,
    minDeposit: minDeposit as bigint,
    minWithdrawDelay,
    withdrawSafetyMarginSec,
    confirmations,
    pollIntervalMs,
    fromBlock,
    database: database as ServerConfig["database"],
    retryWindowMs,
    maxHeaderBytes,
    upstreamTimeoutMs,
    forwardBeforeDurable: forwardBeforeDurable ?? CONFIG_DEFAULTS.forwardBeforeDurable,
    maxTimeoutSeconds,
    healthPath,
    metricsPath,
    relay,
    payee: payee as Address,
    receiptSigner: receiptSigner as Address,
    ...(relayerKey ? { relayer: privateKeyToAccount(relayerKey).address } : {}),
    secrets: new ServerSecrets(payeeKey as Hex, relayerKey),
  };
}

function parseListen(c: Checker, value: unknown): { host: string; port: number } {
  if (value === undefined) return { host: CONFIG_DEFAULTS.host, port: CONFIG_DEFAULTS.port };
  if (!isRecord(value)) {
    c.issue(`config.listen: must be an object like { "host": "127.0.0.1", "port": 8402 }, got ${show(value)}`);
    return { host: CONFIG_DEFAULTS.host, port: CONFIG_DEFAULTS.port };
  }
  c.noUnknownKeys("config.listen", value, ["host", "port"]);
  let host: string = CONFIG_DEFAULTS.host;
  if (value.host !== undefined) {
    if (typeof value.host !== "string" || value.host.trim() === "") {
      c.issue(`config.listen.host: must be a non-empty string, got ${show(value.host)}`);
    } else host = value.host.trim();
  }
  const port = c.integer("config.listen.port", value.port, { min: 0, max: 65535, fallback: CONFIG_DEFAULTS.port });
  return { host, port };
}

function parseToken(c: Checker, value: unknown, network: NetworkInfo | undefined): ServerConfig["token"] | undefined {
  const spec = typeof value === "string" ? { address: value } : value;
  if (spec !== undefined && !isRecord(spec)) {
    c.issue(`config.token: must be an address or an object { "address", "decimals", "name", "version" }`);
    return undefined;
  }
  const given = spec ?? {};
  c.noUnknownKeys("config.token", given, ["address", "decimals", "name", "version"]);
  let address: Address | undefined;
  if (given.address !== undefined) address = c.address("config.token.address", given.address, true);
  else if (network?.usdc) address = getAddress(network.usdc);
  else if (network) c.issue(`config.token.address: required on network ${network.name} (it has no canonical USDC)`);
  const decimals = c.integer("config.token.decimals", given.decimals, {
    min: 0,
    max: 36,
    fallback: CONFIG_DEFAULTS.decimals,
  });
  const name = c.nonEmptyString("config.token.name", given.name) ?? network?.usdcName ?? "USD Coin";
  const version = c.nonEmptyString("config.token.version", given.version) ?? network?.usdcVersion ?? "2";
  return address ? { address, decimals, name, version } : undefined;
}

const ROUTE_KEY = /^(?:([A-Z]+)\s+)?(\/\S*)$/;
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

function parseRoutes(c: Checker, value: unknown, decimals: number): RouteTable | undefined {
  if (value === undefined) {
    c.issue(`config.routes: required; e.g. { "GET /weather": "$0.001" }`);
    return undefined;
  }
  if (!isRecord(value)) {
    c.issue(`config.routes: must be an object mapping "METHOD /path" to a price, got ${show(value)}`);
    return undefined;
  }
  const table: Record<string, RoutePrice> = {};
  const entries = Object.entries(value);
  if (entries.length === 0) c.issue(`config.routes: is empty; list at least one route`);
  for (const [key, price] of entries) {
    const where = `config.routes['${key}']`;
    const match = ROUTE_KEY.exec(key.trim());
    if (!match) {
      c.issue(`${where}: the key must look like "GET /path", "/path" or "/path/*"`);
      continue;
    }
    if (match[1] !== undefined && !METHODS.has(match[1])) {
      c.issue(`${where}: unknown method ${match[1]}; use one of ${[...METHODS].join(", ")}`);
      continue;
    }
    if (match[2].includes("*") && !/^\/(?:[^*]*\/)?\*$/.test(match[2])) {
      c.issue(`${where}: "*" is only allowed as the last segment ("/path/*")`);
      continue;
    }
    if (price === null) {
      table[key] = null;
      continue;
    }
    if (typeof price === "string" || typeof price === "number") {
      const atomic = routePrice(c, where, price, decimals);
      if (atomic !== undefined) table[key] = atomic.toString();
      continue;
    }
    if (!isRecord(price)) {
      c.issue(
        `${where}: must be a price ("$0.001"), an object { "price", "pricing" } or null (free), got ${show(price)}`,
      );
      continue;
    }
    c.noUnknownKeys(where, price, ["price", "pricing", "description"]);
    const atomic = routePrice(c, `${where}.price`, price.price, decimals);
    const pricing = c.oneOf<Pricing>(`${where}.pricing`, price.pricing, ["fixed", "upto"]);
    const description = c.nonEmptyString(`${where}.description`, price.description);
    if (atomic !== undefined) {
      table[key] = {
        price: atomic.toString(),
        pricing: pricing ?? "fixed",
        ...(description ? { description } : {}),
      };
    }
  }
  return table;
}

function routePrice(c: Checker, where: string, price: unknown, decimals: number): bigint | undefined {
  if (price === undefined) {
    c.issue(`${where}: a price is required`);
    return undefined;
  }
  const atomic = c.amount(where, price, decimals, "price");
  if (atomic === 0n) c.issue(`${where}: price must be above zero; use null for a free route`);
  return atomic;
}

function parseDatabase(c: Checker, value: unknown, baseDir: string): ServerConfig["database"] | undefined {
  const spec = typeof value === "string" ? { path: value } : (value ?? {});
  if (!isRecord(spec)) {
    c.issue(`config.database: must be a path or an object { "path", "durable", "fsync" }, got ${show(value)}`);
    return undefined;
  }
  c.noUnknownKeys("config.database", spec, ["path", "durable", "fsync"]);
  let file: string = CONFIG_DEFAULTS.databasePath;
  if (spec.path !== undefined) {
    if (typeof spec.path !== "string" || spec.path.trim() === "") {
      c.issue(`config.database.path: must be a non-empty file path, got ${show(spec.path)}`);
      return undefined;
    }
    file = spec.path;
  }
  let durable: boolean = CONFIG_DEFAULTS.durable;
  if (spec.durable !== undefined) {
    if (typeof spec.durable !== "boolean") c.issue(`config.database.durable: must be true or false`);
    else durable = spec.durable;
  }
  let fsync: "background" | "commit" = CONFIG_DEFAULTS.fsync;
  if (spec.fsync !== undefined) {
    if (spec.fsync !== "background" && spec.fsync !== "commit") {
      c.issue(`config.database.fsync: must be "background" or "commit", got ${show(spec.fsync)}`);
    } else fsync = spec.fsync;
  }
  // ":memory:" stays as is (tests); anything else is relative to the config file, not the cwd,
  // so `paychan server --config /etc/paychan/config.json` finds its database wherever it is run from.
  return { path: file === ":memory:" ? file : path.resolve(baseDir, file), durable, fsync };
}

function networkNames(): string {
  return Object.keys(NETWORKS).join(", ");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value as it would appear in the JSON file. */
function show(value: unknown): string {
  if (value === undefined) return "nothing";
  try {
    const text = JSON.stringify(value);
    return text.length > 60 ? `${text.slice(0, 57)}...` : text;
  } catch {
    return String(value);
  }
}

/** Accumulates issues so one start-up attempt reports every problem. */
class Checker {
  readonly issues: string[] = [];

  issue(message: string): void {
    this.issues.push(message);
  }

  noUnknownKeys(where: string, value: Record<string, unknown>, known: readonly string[]): void {
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) this.issue(`${where}: unknown key "${key}" (known: ${known.join(", ")})`);
    }
  }

  url(where: string, value: unknown, { required }: { required: boolean }): URL | undefined {
    if (value === undefined) {
      if (required) this.issue(`${where}: required; an http:// or https:// URL`);
      return undefined;
    }
    if (typeof value !== "string") {
      this.issue(`${where}: must be an http:// or https:// URL string, got ${show(value)}`);
      return undefined;
    }
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      this.issue(`${where}: ${show(value)} is not a valid URL`);
      return undefined;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      this.issue(`${where}: ${show(value)} must use http:// or https://`);
      return undefined;
    }
    if (url.search || url.hash) {
      this.issue(`${where}: ${show(value)} must not have a query or fragment`);
      return undefined;
    }
    return url;
  }

  address(where: string, value: unknown, required: boolean): Address | undefined {
    if (value === undefined) {
      if (required) this.issue(`${where}: required; a 0x-prefixed 20-byte address`);
      return undefined;
    }
    if (typeof value !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(value)) {
      this.issue(`${where}: ${show(value)} is not a 0x-prefixed 20-byte hex address`);
      return undefined;
    }
    // Mixed case means EIP-55: a wrong checksum is almost always a typo, so refuse it.
    if (!isAddress(value, { strict: true })) {
      this.issue(`${where}: ${value} has an invalid EIP-55 checksum (write it all lowercase to skip the check)`);
      return undefined;
    }
    if (/^0x0{40}$/.test(value)) {
      this.issue(`${where}: must not be the zero address`);
      return undefined;
    }
    return getAddress(value);
  }

  /** A price or amount in the token: "$1.50", "1500000" (atomic units) or a safe integer of atomic units. */
  amount(where: string, value: unknown, decimals: number, what = "amount"): bigint | undefined {
    let atomic: bigint;
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value) || value < 0) {
        this.issue(`${where}: ${what} ${value} must be a whole number of atomic units, or a string like "$0.001"`);
        return undefined;
      }
      atomic = BigInt(value);
    } else if (typeof value === "string") {
      try {
        atomic = toAtomic(value, decimals);
      } catch (error) {
        const detail = /more than \d+ decimals/.test((error as Error).message)
          ? `has more than the token's ${decimals} decimals`
          : `must be "$<dollars>" (e.g. "$0.001") or a string of atomic units (e.g. "1000")`;
        this.issue(`${where}: ${what} ${show(value)} ${detail}`);
        return undefined;
      }
    } else {
      this.issue(`${where}: ${what} must be a string like "$0.001" or "1000" (atomic units), got ${show(value)}`);
      return undefined;
    }
    if (atomic > MAX_AMOUNT) {
      this.issue(`${where}: ${what} ${show(value)} exceeds the largest channel amount (2^96 - 1 atomic units)`);
      return undefined;
    }
    return atomic;
  }

  integer(
    where: string,
    value: unknown,
    o: { min: number; max: number; fallback: number; unit?: string; why?: string },
  ): number {
    if (value === undefined) return o.fallback;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      this.issue(`${where}: must be a whole number${o.unit ? ` of ${o.unit}` : ""}, got ${show(value)}`);
      return o.fallback;
    }
    if (value < o.min || value > o.max) {
      this.issue(`${where}: ${value} is outside [${o.min}, ${o.max}]${o.why ? ` (${o.why})` : ""}`);
      return o.fallback;
    }
    return value;
  }

  oneOf<T extends string>(where: string, value: unknown, allowed: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
      this.issue(`${where}: must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${show(value)}`);
      return undefined;
    }
    return value as T;
  }

  nonEmptyString(where: string, value: unknown): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value.trim() === "") {
      this.issue(`${where}: must be a non-empty string, got ${show(value)}`);
      return undefined;
    }
    return value;
  }

  /** An absolute path for a built-in endpoint, or null to disable it. */
  endpointPath(where: string, value: unknown, fallback: string): string | null {
    if (value === undefined) return fallback;
    if (value === null) return null;
    if (typeof value !== "string" || !/^\/[A-Za-z0-9._~\-/]*$/.test(value) || value.includes("//")) {
      this.issue(`${where}: must be an absolute path like "/healthz" (or null to disable), got ${show(value)}`);
      return fallback;
    }
    return value;
  }

  privateKey(name: string, value: string | undefined, required: boolean): Hex | undefined {
    if (value === undefined || value === "") {
      if (required) this.issue(`environment ${name}: required; a 0x-prefixed 32-byte hex private key`);
      return undefined;
    }
    // Never echo the value: it is a secret, and a near-miss is still most of one.
    const text = value.trim();
    const hex = /^0x[0-9a-fA-F]{64}$/.test(text) ? text : /^[0-9a-fA-F]{64}$/.test(text) ? `0x${text}` : undefined;
    if (!hex) {
      this.issue(`environment ${name}: must be a 32-byte hex private key (64 hex digits, optionally 0x-prefixed)`);
      return undefined;
    }
    const k = BigInt(hex);
    if (k === 0n || k >= SECP256K1_N) {
      this.issue(`environment ${name}: is not a valid secp256k1 private key (must be in [1, n-1])`);
      return undefined;
    }
    return hex.toLowerCase() as Hex;
  }
}
