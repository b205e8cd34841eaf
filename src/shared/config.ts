import { readFileSync } from "node:fs";
import path from "node:path";
import { getAddress, isAddress, parseGwei, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { z } from "zod/v4";
import { findNetwork, NETWORKS, type NetworkInfo } from "../chain/networks";
import { MAX_PAYMENT_HEADER_BYTES, type Pricing } from "../protocol/headers";
import { parseRate, toAtomic, type Price } from "../protocol/price";
import { MAX_AMOUNT } from "../protocol/voucher";

/**
 * The configuration of the paychan server and of its settler: one JSON file for everything public
 * (paychan.config.json, described field by field in docs/config.md, with a JSON Schema in
 * paychan.config.schema.json), the environment for every secret, so the file can be committed and
 * shared. One zod schema validates both at start-up, applies the defaults, and reports every
 * problem at once, each with the JSON path (or the environment variable) it concerns.
 *
 * ```json
 * {
 *   "$schema": "./paychan.config.schema.json",
 *   "upstream": "http://127.0.0.1:3000",
 *   "network": "base-sepolia",
 *   "contract": "0x…",
 *   "routes": { "GET /weather": "$0.001", "POST /llm": { "price": "$0.05", "pricing": "upto" }, "GET /": null },
 *   "settler": { "minUnclaimed": "$1" }
 * }
 * ```
 *
 * Environment: PAYCHAN_PAYEE_PRIVATE_KEY (the server's receipt key; its address is the payee
 * unless PAYCHAN_PAYEE_ADDRESS names another), PAYCHAN_RELAYER_PRIVATE_KEY (enables the gasless
 * relay), PAYCHAN_SETTLER_PRIVATE_KEY (sends the settler's claims; default the payee key), and the
 * network's RPC variable (e.g. BASE_SEPOLIA_RPC_URL) when the file has no `rpcUrl`.
 */

/** How one route is paid: a price, or `null` for a free route. */
export type RoutePrice =
  | Price
  | {
      readonly price: Price;
      readonly pricing?: Pricing;
      readonly description?: string;
      /** Metered streams: `price` is then the price of one unit (docs/protocol.md#metered-streams). */
      readonly meter?: RouteMeter;
    }
  | null;

/** What a unit of a metered stream is. */
export type MeterUnit = "token" | "chunk" | "byte";

/** How a metered stream (SSE, chunked or WebSocket) is paid for: per unit, in blocks of units. */
export interface RouteMeter {
  /** token: as reported by the upstream; chunk: one SSE event, body chunk or WebSocket message; byte: one byte. */
  readonly unit?: MeterUnit;
  /** Units one voucher (one block) pays for; the last block is charged by use. */
  readonly blockUnits?: number;
  /** How long a stream waits, paused, for the next block's voucher before it ends (ms). */
  readonly voucherTimeoutMs?: number;
}

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
/** Environment variable: the key that sends the settler's claims and pays their gas. */
export const SETTLER_KEY_ENV = "PAYCHAN_SETTLER_PRIVATE_KEY";
/** Environment variable: PostgreSQL URL of a store shared by several instances (overrides database.url). */
export const DATABASE_URL_ENV = "PAYCHAN_DATABASE_URL";

/** The contract's bounds on a channel's withdraw delay (PaymentChannels.MIN/MAX_WITHDRAW_DELAY). */
export const CONTRACT_MIN_WITHDRAW_DELAY = 15 * 60;
export const CONTRACT_MAX_WITHDRAW_DELAY = 30 * 24 * 3600;

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** Defaults of every optional setting that does not depend on the network or the environment. */
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
  leaseMs: 15_000,
  retryWindowMs: 60_000,
  maxHeaderBytes: 16 * 1024,
  upstreamTimeoutMs: 30_000,
  forwardBeforeDurable: "safe" as const,
  maxTimeoutSeconds: 60,
  healthPath: "/healthz",
  metricsPath: "/metrics",
  relayPath: "/paychan/relay",
  unmatchedRoutes: "reject" as const,
  pollIntervalMs: 2_000,
  quoteTtlSec: 300,
  feedMaxAgeSec: 3600,
} as const;

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

/** Where a token's exchange rate (dollars per whole token) comes from. */
export type RateSetting =
  | { readonly kind: "fixed"; readonly rate: bigint }
  | { readonly kind: "feed"; readonly feed: Address; readonly maxAgeSec: number };

/** One token channels may hold. */
export interface TokenSettings {
  readonly address: Address;
  readonly symbol: string;
  readonly decimals: number;
  /** EIP-712 domain of the token (for EIP-3009 authorizations). */
  readonly name: string;
  readonly version: string;
  readonly rate: RateSetting;
  /** How long (seconds) a quote of this token's rate holds. */
  readonly quoteTtlSec: number;
  /** "quote": a quote holds until it expires; "channel": the first quote a channel pays under holds for its life. */
  readonly lockRate: "quote" | "channel";
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
  /** The first of {@link ServerConfig.tokens}: the relay's token and the unit of atomic route prices. */
  readonly token: {
    readonly address: Address;
    readonly decimals: number;
    /** EIP-712 domain of the token (for EIP-3009 authorizations). */
    readonly name: string;
    readonly version: string;
  };
  /**
   * Every token channels may hold, each with its rate: `tokens` of the file, or `token` alone at
   * a fixed rate of one dollar.
   */
  readonly tokens: readonly TokenSettings[];
  /** Route table in dollars, values checked (atomic prices count units of the first token's decimals). */
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
  /**
   * The store: the SQLite file at `path`, or, when `url` is set, PostgreSQL shared by several
   * instances (docs/scaling.md), whose settler duty moves between them by a lease of `leaseMs`.
   */
  readonly database: {
    readonly path: string;
    readonly durable: boolean;
    readonly fsync: "background" | "commit";
    readonly url: string | undefined;
    readonly leaseMs: number;
  };
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
  /**
   * x402 `exact` offered beside `channel` (one EIP-3009 transfer per request), settled with the
   * relayer key, or by the hosted x402 facilitator at `facilitatorUrl`; null when not offered.
   */
  readonly exact: { readonly facilitatorUrl?: string } | null;
  readonly secrets: ServerSecrets;
}

/** When the settler claims. */
export interface SettlerPolicy {
  /** Smallest unclaimed amount (atomic units) worth a claim on its own. */
  readonly minUnclaimed: bigint;
  /** An unclaimed voucher older than this (seconds) is claimed whatever its amount. */
  readonly maxAgeSec: number;
  /** Most channels in one claimBatch transaction. */
  readonly maxBatchSize: number;
  /** Above this gas price (wei) non-urgent claims wait; urgent ones go anyway. */
  readonly maxGasPriceWei?: bigint;
}

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

export interface ParseOptions {
  /** Environment holding the secrets and RPC URLs. Default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Directory relative paths (the database) are resolved against. Default the working directory. */
  readonly baseDir?: string;
  /** Named in error messages. */
  readonly source?: string;
}

/** Reads, parses and validates a configuration file for the server; throws {@link ConfigError}. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const { raw, options } = readConfigFile(file, env);
  return parseConfig(raw, options);
}

/** Reads, parses and validates a configuration file for the settler; throws {@link ConfigError}. */
export function loadSettleConfig(file: string, env: NodeJS.ProcessEnv = process.env): SettleConfig {
  const { raw, options } = readConfigFile(file, env);
  return parseSettleConfig(raw, options);
}

/** Validates a parsed configuration object for the server; throws {@link ConfigError} listing every problem. */
export function parseConfig(raw: unknown, options: ParseOptions = {}): ServerConfig {
  return parse(raw, options, "server").server;
}

/**
 * Validates a parsed configuration object for the settler; throws {@link ConfigError} listing
 * every problem. The settler signs no receipts and runs no relay: the `relay` section and
 * PAYCHAN_RELAYER_PRIVATE_KEY are not its business and are not read, and without a payee key the
 * settler key's address is the payee.
 */
export function parseSettleConfig(raw: unknown, options: ParseOptions = {}): SettleConfig {
  const { [RELAYER_KEY_ENV]: _relayerKey, ...env } = options.env ?? process.env;
  const file = isRecord(raw) ? withoutKey(raw, "relay") : raw;
  const { server, settler, senderKey } = parse(file, { ...options, env }, "settler");
  const config = { server, settler, senderKey, sender: privateKeyToAccount(senderKey).address };
  Object.defineProperty(config, "senderKey", { enumerable: false });
  return config;
}

/** The JSON Schema (draft-07) of paychan.config.json, generated from the zod schema that validates it. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = fileSchema({
    role: "server",
    network: undefined,
    decimals: CONFIG_DEFAULTS.decimals,
    tokenList: false,
    env: {},
    rpcEnv: undefined,
    baseDir: ".",
  });
  return z.toJSONSchema(schema, { target: "draft-7", io: "input" }) as Record<string, unknown>;
}

function readConfigFile(file: string, env: NodeJS.ProcessEnv): { raw: unknown; options: ParseOptions } {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(absolute, "utf8");
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : String(error);
    throw new ConfigError([`cannot read ${absolute}: ${reason}`]);
  }
  try {
    return { raw: JSON.parse(text), options: { env, baseDir: path.dirname(absolute), source: absolute } };
  } catch (error) {
    throw new ConfigError([`not valid JSON: ${(error as Error).message}`], absolute);
  }
}

/** Who reads the file: the settler needs no receipt key of its own, and reads no relay settings. */
type Role = "server" | "settler";

/** What the schema's checks depend on beyond the value they check. */
interface Context {
  readonly role: Role;
  /** The file's network, when it names a known one: it decides the token, RPC and confirmation defaults. */
  readonly network: NetworkInfo | undefined;
  /** The (first) token's decimals, under which prices are read. */
  readonly decimals: number;
  /** Whether the file lists its tokens (`tokens`), leaving `token` and its network default unused. */
  readonly tokenList: boolean;
  /** The environment, without empty variables (an empty variable counts as unset). */
  readonly env: Readonly<Record<string, string>>;
  /** The environment variable the RPC URL comes from, when the file has no `rpcUrl`. */
  readonly rpcEnv: string | undefined;
  readonly baseDir: string;
}

function parse(
  raw: unknown,
  options: ParseOptions,
  role: Role,
): { server: ServerConfig; settler: SettlerSettings; senderKey: Hex } {
  if (!isRecord(raw)) throw new ConfigError(["config: must be a JSON object"], options.source);
  if (raw.token !== undefined && raw.tokens !== undefined) {
    throw new ConfigError([`config.tokens: give either "token" or "tokens", not both`], options.source);
  }
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.env ?? process.env)) if (value) env[name] = value;
  const token = Array.isArray(raw.tokens) ? raw.tokens[0] : raw.token;
  const decimals = isRecord(token) && isInteger(token.decimals, 0, 36) ? token.decimals : CONFIG_DEFAULTS.decimals;
  const network = typeof raw.network === "string" ? findNetwork(raw.network) : undefined;
  const rpcEnv = network && raw.rpcUrl === undefined ? network.rpcEnv : undefined;
  const context: Context = {
    role,
    network,
    decimals,
    tokenList: raw.tokens !== undefined,
    env,
    rpcEnv,
    baseDir: options.baseDir ?? process.cwd(),
  };
  const result = configSchema(context).safeParse({ file: raw, env });
  if (!result.success) throw new ConfigError(result.error.issues.flatMap(describeIssue), options.source);
  const { server, settler, senderKey } = result.data;
  return { server: options.source ? { source: options.source, ...server } : server, settler, senderKey };
}

/** The file and the environment together, assembled into the working configuration. */
function configSchema(context: Context) {
  return z.object({ file: fileSchema(context), env: environmentSchema(context) }).transform(({ file, env }, ctx) => {
    // zod runs a transform after issues it can continue from (a failed refinement): assemble only valid input.
    if (ctx.issues.length > 0) return z.NEVER;
    const {
      $schema: _schema,
      network,
      rpcUrl,
      publicUrl,
      token: singleToken,
      tokens: tokenList,
      confirmations,
      fromBlock,
      relay,
      exact,
      settler,
      ...rest
    } = file;
    const tokens: TokenSettings[] = tokenList ?? [
      {
        // Validation requires an address on networks without a canonical USDC.
        address: singleToken.address ?? getAddress(network.usdc as Address),
        symbol: "USDC",
        decimals: singleToken.decimals,
        name: singleToken.name ?? network.usdcName,
        version: singleToken.version ?? network.usdcVersion,
        rate: { kind: "fixed", rate: parseRate("1") },
        quoteTtlSec: CONFIG_DEFAULTS.quoteTtlSec,
        lockRate: "quote",
      },
    ];
    const relayerKey = env[RELAYER_KEY_ENV];
    // Validation guarantees one key in each role: the payee key for the server, either key for the settler.
    const payeeKey = (env[PAYEE_KEY_ENV] ?? env[SETTLER_KEY_ENV]) as Hex;
    const senderKey = env[SETTLER_KEY_ENV] ?? payeeKey;
    const receiptSigner = privateKeyToAccount(payeeKey).address;
    const rpcUrlFromEnv = (env as Readonly<Record<string, unknown>>)[network.rpcEnv] as URL | undefined;
    const server: ServerConfig = {
      ...rest,
      ...(publicUrl ? { publicUrl: publicUrl.toString().replace(/\/+$/, "") } : {}),
      network,
      // Without `rpcUrl` or its environment variable only local networks pass validation.
      rpcUrl: (rpcUrl ?? rpcUrlFromEnv)?.toString() ?? "http://127.0.0.1:8545",
      token: {
        address: tokens[0].address,
        decimals: tokens[0].decimals,
        name: tokens[0].name,
        version: tokens[0].version,
      },
      tokens,
      confirmations: confirmations ?? network.confirmations,
      fromBlock: fromBlock ?? (network.local ? 1n : "latest"),
      // Offered exactly when a relayer key is configured, unless the file turns it off: the key is the operator's opt-in.
      relay: relay === undefined ? (relayerKey ? { path: CONFIG_DEFAULTS.relayPath } : null) : relay || null,
      payee: env[PAYEE_ADDRESS_ENV] ?? receiptSigner,
      receiptSigner,
      ...(relayerKey ? { relayer: privateKeyToAccount(relayerKey).address } : {}),
      // Like the relay: on exactly when a relayer key can settle, unless the file says otherwise.
      exact:
        exact === undefined
          ? relayerKey
            ? {}
            : null
          : exact
            ? exact.facilitatorUrl
              ? { facilitatorUrl: exact.facilitatorUrl.toString().replace(/\/+$/, "") }
              : {}
            : null,
      secrets: new ServerSecrets(payeeKey, relayerKey),
    };
    const { minUnclaimed, maxAgeSec, maxBatchSize, maxGasPriceGwei, ...schedule } = settler;
    const policy = {
      minUnclaimed,
      maxAgeSec,
      maxBatchSize,
      ...(maxGasPriceGwei ? { maxGasPriceWei: maxGasPriceGwei } : {}),
    };
    return { server, settler: { policy, ...schedule }, senderKey };
  });
}

/** paychan.config.json. */
function fileSchema(context: Context) {
  const { network, decimals, env } = context;
  const rpcUrlMissing =
    network && !network.local && !env[network.rpcEnv]
      ? `required (or set ${network.rpcEnv} in the environment) on network ${network.name}`
      : undefined;
  const tokenAddressMissing =
    network && !network.usdc && !context.tokenList
      ? `required on network ${network.name} (it has no canonical USDC)`
      : undefined;
  return strictObject("a JSON object", {
    $schema: z.string().optional().meta({ description: "The JSON Schema of this file, for editors." }),
    upstream: url().meta({ description: "Base URL of the API the proxy forwards to." }),
    listen: strictObject(`an object like { "host": "127.0.0.1", "port": 8402 }`, {
      host: nonEmptyString()
        .default(CONFIG_DEFAULTS.host)
        .transform((host) => host.trim())
        .meta({ description: "Interface the proxy listens on." }),
      port: integer({ min: 0, max: 65535 })
        .default(CONFIG_DEFAULTS.port)
        .meta({ description: "TCP port the proxy listens on (0: any free port)." }),
    })
      .prefault({})
      .meta({ description: "Where the proxy listens." }),
    publicUrl: url()
      .optional()
      .meta({ description: "Public base URL of this server, for the resource URL in 402 answers." }),
    network: z
      .enum(NETWORK_IDS, {
        error: (issue) =>
          issue.input === undefined
            ? `required; one of ${NETWORK_NAMES}`
            : `${show(issue.input)} is not a known network; use one of ${NETWORK_NAMES}`,
      })
      .transform((id) => findNetwork(id) as NetworkInfo)
      .meta({ description: "The chain the contract is on: a network name or its CAIP-2 id." }),
    rpcUrl: (rpcUrlMissing ? url(rpcUrlMissing) : url().optional()).meta({
      description:
        "JSON-RPC endpoint; default the network's environment variable, or 127.0.0.1:8545 on local networks.",
    }),
    contract: address().meta({ description: "Address of the PaymentChannels contract." }),
    token: z
      .union(
        [
          address(),
          strictObject(`an address or an object { "address", "decimals", "name", "version" }`, {
            address: (tokenAddressMissing ? address(tokenAddressMissing) : address().optional()).meta({
              description: "Token address; default the network's USDC.",
            }),
            decimals: integer({ min: 0, max: 36 })
              .default(CONFIG_DEFAULTS.decimals)
              .meta({ description: "Token decimals." }),
            name: nonEmptyString()
              .optional()
              .meta({ description: "Name in the token's EIP-712 domain; default the network's USDC's." }),
            version: nonEmptyString()
              .optional()
              .meta({ description: "Version in the token's EIP-712 domain; default the network's USDC's." }),
          }),
        ],
        {
          error: (issue) =>
            `must be an address or an object { "address", "decimals", "name", "version" }, got ${show(issue.input)}`,
        },
      )
      // A missing token still goes through the object, which requires an address where the network has no USDC.
      .prefault({ address: undefined })
      .transform((token) =>
        typeof token === "string" ? { address: token, decimals: CONFIG_DEFAULTS.decimals } : token,
      )
      .meta({ description: "The token channels hold: an address, or an object; default the network's USDC." }),
    tokens: tokensSchema().optional(),
    routes: routesSchema(decimals),
    unmatchedRoutes: oneOf(["reject", "free"])
      .default(CONFIG_DEFAULTS.unmatchedRoutes)
      .meta({ description: "What a request no route matches gets: a 404 (reject) or the upstream (free)." }),
    minDeposit: amount(decimals, "amount")
      .prefault(CONFIG_DEFAULTS.minDeposit)
      .meta({ description: "Smallest channel deposit accepted." }),
    minWithdrawDelay: integer({
      min: CONTRACT_MIN_WITHDRAW_DELAY,
      max: CONTRACT_MAX_WITHDRAW_DELAY,
      unit: "seconds",
      why: "the contract's withdraw delay bounds",
    })
      .default(CONFIG_DEFAULTS.minWithdrawDelay)
      .meta({ description: "Shortest withdraw delay (seconds) a channel must have to be accepted." }),
    withdrawSafetyMarginSec: integer({ min: 0, max: CONTRACT_MAX_WITHDRAW_DELAY, unit: "seconds" })
      .default(CONFIG_DEFAULTS.withdrawSafetyMarginSec)
      .meta({ description: "Vouchers are refused this long (seconds) before a pending withdrawal completes." }),
    confirmations: integer({ min: 0, max: 1000 })
      .optional()
      .meta({ description: "Blocks before the watcher acts on an event; default the network's." }),
    pollIntervalMs: integer({ min: 50, max: 600_000, unit: "ms" })
      .default(CONFIG_DEFAULTS.pollIntervalMs)
      .meta({ description: "How often the watcher polls for new blocks (ms)." }),
    fromBlock: fromBlockSchema(),
    database: databaseSchema(context.baseDir, context.env),
    retryWindowMs: integer({ min: 0, max: 24 * 3600 * 1000, unit: "ms" })
      .default(CONFIG_DEFAULTS.retryWindowMs)
      .meta({
        description: "How long (ms) a retry of an accepted voucher gets its receipt again; later it is refused.",
      }),
    maxHeaderBytes: integer({
      // Room for a full PAYMENT-SIGNATURE plus ordinary headers; above 1 MiB is a memory-DoS knob.
      min: MAX_PAYMENT_HEADER_BYTES + 2048,
      max: 1024 * 1024,
      unit: "bytes",
    })
      .default(CONFIG_DEFAULTS.maxHeaderBytes)
      .meta({ description: "Largest request header section (bytes)." }),
    upstreamTimeoutMs: integer({ min: 100, max: 3600 * 1000, unit: "ms" })
      .default(CONFIG_DEFAULTS.upstreamTimeoutMs)
      .meta({ description: "Upstream idle timeout (ms): no bytes from the upstream for this long fails the request." }),
    forwardBeforeDurable: oneOf(["safe", "never"]).default(CONFIG_DEFAULTS.forwardBeforeDurable).meta({
      description: "Whether paid GET, HEAD and OPTIONS requests reach the upstream while their voucher's fsync runs.",
    }),
    maxTimeoutSeconds: integer({ min: 1, max: 3600, unit: "seconds" })
      .default(CONFIG_DEFAULTS.maxTimeoutSeconds)
      .meta({ description: "maxTimeoutSeconds announced in 402 answers." }),
    healthPath: endpointPath()
      .default(CONFIG_DEFAULTS.healthPath)
      .meta({ description: "Path of the health endpoint, or null to disable it." }),
    metricsPath: endpointPath()
      .default(CONFIG_DEFAULTS.metricsPath)
      .meta({ description: "Path of the Prometheus metrics endpoint, or null to disable it." }),
    relay: relaySchema(env),
    exact: exactSchema(env),
    settler: settlerSchema(decimals),
  })
    .refine((file) => duplicateEndpoint(file, env) === undefined, {
      error: (issue) => `the built-in endpoint path ${duplicateEndpoint(issue.input as FileLike, env)} is used twice`,
      when: unlessFailed(["healthPath"], ["metricsPath"], ["relay"]),
      abort: true,
    })
    .refine((file) => file.settler.intervalSec * 3 <= file.minWithdrawDelay, {
      // Withdrawal requests of channels the settler's watcher does not follow (and every request
      // when it does not watch) are noticed by the next scheduled pass: it must come well within
      // the shortest withdraw delay the server accepts.
      path: ["settler", "intervalSec"],
      error: (issue) => {
        const { settler, minWithdrawDelay } = issue.input as {
          settler: { intervalSec: number };
          minWithdrawDelay: number;
        };
        return (
          `${settler.intervalSec} s leaves too little of the ${minWithdrawDelay} s minimum withdraw delay ` +
          `(config.minWithdrawDelay) to claim an exiting channel; use at most a third of it`
        );
      },
      when: unlessFailed(["settler"], ["minWithdrawDelay"]),
      abort: true,
    })
    .meta({
      title: "paychan configuration",
      description: "paychan.config.json: the paychan server's and settler's settings (docs/config.md).",
    });
}

/** The secrets and RPC endpoint the file leaves to the environment. */
function environmentSchema(context: Context) {
  const { role, rpcEnv } = context;
  const payeeKey =
    role === "server" ? privateKey("required; a 0x-prefixed 32-byte hex private key") : privateKey().optional();
  return z
    .object({
      [PAYEE_KEY_ENV]: payeeKey,
      [PAYEE_ADDRESS_ENV]: address().optional(),
      [RELAYER_KEY_ENV]: privateKey().optional(),
      [SETTLER_KEY_ENV]: privateKey().optional(),
      // Read only when the file has no rpcUrl of its own.
      ...(rpcEnv ? { [rpcEnv]: url().optional() } : {}),
    })
    .refine((secrets) => role === "server" || secrets[SETTLER_KEY_ENV] || secrets[PAYEE_KEY_ENV], {
      path: [SETTLER_KEY_ENV],
      error: `required (or ${PAYEE_KEY_ENV}); the key that sends claims`,
      abort: true,
    });
}

/** The accepted tokens, each with its rate source. */
function tokensSchema() {
  const rate = z
    .union(
      [
        z.string().transform((text, ctx) => {
          try {
            return { kind: "fixed" as const, rate: parseRate(text) };
          } catch (error) {
            ctx.issues.push({ code: "custom", input: text, message: (error as Error).message });
            return z.NEVER;
          }
        }),
        strictObject(`an object { "feed", "maxAgeSec" }`, {
          feed: address().meta({ description: "A Chainlink-style price feed of the token in dollars." }),
          maxAgeSec: integer({ min: 1, max: 7 * 24 * 3600, unit: "seconds" })
            .default(CONFIG_DEFAULTS.feedMaxAgeSec)
            .meta({ description: "An answer older than this (seconds) is stale: the token is not quoted then." }),
        }).transform((feed) => ({ kind: "feed" as const, ...feed })),
      ],
      {
        error: (issue) =>
          `must be a fixed rate in dollars per token ("1", "1.08") or { "feed", "maxAgeSec" }, got ${show(issue.input)}`,
      },
    )
    .meta({ description: `Dollars per whole token: a fixed rate ("1" for a dollar stablecoin) or a price feed.` });
  const token = strictObject(`an object { "address", "symbol", "decimals", "name", "version", "rate" }`, {
    address: address().meta({ description: "Token address." }),
    symbol: z
      .string()
      .regex(/^[A-Za-z0-9.]{1,16}$/, { error: (issue) => `must be a ticker like "EURC", got ${show(issue.input)}` })
      .meta({ description: "Ticker, as shown in metrics, receipts and the demo." }),
    decimals: integer({ min: 0, max: 36 }).meta({ description: "Token decimals." }),
    name: nonEmptyString().meta({ description: "Name in the token's EIP-712 domain." }),
    version: nonEmptyString().meta({ description: "Version in the token's EIP-712 domain." }),
    rate,
    quoteTtlSec: integer({ min: 10, max: 24 * 3600, unit: "seconds" })
      .default(CONFIG_DEFAULTS.quoteTtlSec)
      .meta({ description: "How long (seconds) a quote of the rate holds." }),
    lockRate: oneOf(["quote", "channel"])
      .default("quote")
      .meta({ description: "quote: the quoted rate holds until the quote expires; channel: for the channel's life." }),
  });
  return z
    .array(token, { error: (issue) => `must be an array of tokens, got ${show(issue.input)}` })
    .min(1, { error: "must name at least one token" })
    .superRefine((tokens, ctx) => {
      const seen = new Set<string>();
      tokens.forEach((t, i) => {
        for (const key of [t.address.toLowerCase(), t.symbol.toUpperCase()]) {
          if (seen.has(key)) ctx.addIssue({ code: "custom", path: [i], message: `${key} is listed twice` });
          seen.add(key);
        }
      });
    })
    .meta({
      description:
        "The tokens channels may hold, each with its rate in dollars (instead of token); the 402 offers one entry per token.",
    });
}

const ROUTE_KEY = /^(?:([A-Z]+)\s+)?(\/\S*)$/;
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

function routesSchema(decimals: number) {
  const key = z.string().superRefine((text, ctx) => {
    const match = ROUTE_KEY.exec(text.trim());
    const problem = !match
      ? `the key must look like "GET /path", "/path" or "/path/*"`
      : match[1] !== undefined && !METHODS.includes(match[1])
        ? `unknown method ${match[1]}; use one of ${METHODS.join(", ")}`
        : match[2].includes("*") && !/^\/(?:[^*]*\/)?\*$/.test(match[2])
          ? `"*" is only allowed as the last segment ("/path/*")`
          : undefined;
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
  const price = amount(decimals, "price").refine((atomic) => atomic > 0n, {
    error: "price must be above zero; use null for a free route",
    abort: true,
  });
  const meter = strictObject(`an object { "unit", "blockUnits", "voucherTimeoutMs" }`, {
    unit: oneOf(["token", "chunk", "byte"]).default("chunk").meta({
      description:
        "token: units reported by the upstream; chunk: one SSE event, body chunk or WebSocket message; byte: one byte.",
    }),
    blockUnits: integer({ min: 1, max: 1_000_000_000, unit: "units" })
      .default(100)
      .meta({ description: "Units one voucher (one block) pays for; the last block is charged by use." }),
    voucherTimeoutMs: integer({ min: 100, max: 600_000, unit: "ms" })
      .default(10_000)
      .meta({ description: "How long a paused stream waits for the next block's voucher before it ends." }),
  });
  const paid = strictObject(`an object { "price", "pricing", "description", "meter" }`, {
    price: price.meta({
      description: "The route's price, or for upto pricing its maximum, or with meter the price of one unit.",
    }),
    pricing: oneOf(["fixed", "upto"])
      .default("fixed")
      .meta({ description: "fixed: the price is charged; upto: the handler charges up to it." }),
    description: nonEmptyString().optional().meta({ description: "Shown to buyers in the 402 answer." }),
    meter: meter.optional().meta({
      description: "Meters a streamed response (SSE, chunked, WebSocket): price is per unit, paid in blocks.",
    }),
  });
  const value = z
    .union([price, z.null(), paid], {
      error: (issue) =>
        `must be a price ("$0.001"), an object { "price", "pricing" } or null (free), got ${show(issue.input)}`,
    })
    .transform((route): RoutePrice => {
      if (route === null) return null;
      if (typeof route === "bigint") return route.toString();
      return { ...route, price: route.price.toString() };
    });
  return z
    .record(key, value, {
      error: (issue) =>
        issue.input === undefined
          ? `required; e.g. { "GET /weather": "$0.001" }`
          : `must be an object mapping "METHOD /path" to a price, got ${show(issue.input)}`,
    })
    .refine((table) => Object.keys(table).length > 0, { error: "is empty; list at least one route", abort: true })
    .meta({
      description: `Prices by route: "METHOD /path", "/path" or "/path/*" to a price, { "price", "pricing", "description" }, or null (free).`,
      minProperties: 1,
    });
}

function fromBlockSchema() {
  const problem = (issue: { input?: unknown }) => `must be a block number or "latest", got ${show(issue.input)}`;
  return z
    .union(
      [
        z.literal("latest"),
        z.number().int({ error: problem }).min(0, { error: problem }),
        z.string().regex(/^[0-9]{1,20}$/, { error: problem }),
      ],
      { error: problem },
    )
    .transform((block) => (block === "latest" ? block : BigInt(block)))
    .optional()
    .meta({
      description: `Block of the watcher's first sync: the contract's deploy block, or "latest"; default 1 on local networks, "latest" elsewhere.`,
    });
}

function databaseSchema(baseDir: string, env: Context["env"]) {
  const shape = `a path or an object { "path", "durable", "fsync", "url", "leaseMs" }`;
  const file = z
    .string({ error: (issue) => `must be a non-empty file path, got ${show(issue.input)}` })
    .regex(/\S/, { error: (issue) => `must be a non-empty file path, got ${show(issue.input)}` });
  const url = z
    .string({ error: (issue) => `must be a postgres:// URL, got ${show(issue.input)}` })
    .regex(/^postgres(ql)?:\/\/\S+$/, { error: (issue) => `must be a postgres:// URL, got ${show(issue.input)}` });
  return z
    .union(
      [
        file,
        strictObject(shape, {
          path: file
            .default(CONFIG_DEFAULTS.databasePath)
            .meta({ description: "The SQLite file, relative to the config file." }),
          durable: boolean()
            .default(CONFIG_DEFAULTS.durable)
            .meta({ description: "false drops every fsync: for benchmarks and tests only." }),
          fsync: oneOf(["background", "commit"]).default(CONFIG_DEFAULTS.fsync).meta({
            description:
              "Where a durable commit is fsynced: background (off the event loop) or commit (inside COMMIT).",
          }),
          url: url.optional().meta({
            description: `PostgreSQL store shared by several instances instead of SQLite (${DATABASE_URL_ENV} overrides it).`,
          }),
          leaseMs: integer({ min: 1_000, max: 300_000, unit: "ms" }).default(CONFIG_DEFAULTS.leaseMs).meta({
            description:
              "PostgreSQL only: lease of the settler duty; another instance takes over at most this long after its holder dies.",
          }),
        }),
      ],
      { error: (issue) => `must be ${shape}, got ${show(issue.input)}` },
    )
    .prefault({})
    .transform((spec) => {
      const {
        path: file,
        durable,
        fsync,
        url: fileUrl,
        leaseMs,
      } = typeof spec === "string"
        ? {
            path: spec,
            durable: CONFIG_DEFAULTS.durable,
            fsync: CONFIG_DEFAULTS.fsync,
            url: undefined,
            leaseMs: CONFIG_DEFAULTS.leaseMs,
          }
        : spec;
      // ":memory:" stays as is (tests); anything else is relative to the config file, not the cwd,
      // so `paychan server --config /etc/paychan/config.json` finds its database wherever it is run from.
      return {
        path: file === ":memory:" ? file : path.resolve(baseDir, file),
        durable,
        fsync,
        url: env[DATABASE_URL_ENV] ?? fileUrl,
        leaseMs,
      };
    })
    .meta({ description: "The store: a SQLite file path, or an object (with url: PostgreSQL)." });
}

function relaySchema(env: Context["env"]) {
  const settings = strictObject(`an object like { "path": "/paychan/relay" } or false`, {
    path: z
      .string({ error: (issue) => `must be an absolute path like "/paychan/relay", got ${show(issue.input)}` })
      .regex(ENDPOINT_PATH, {
        error: (issue) => `must be an absolute path like "/paychan/relay", got ${show(issue.input)}`,
      })
      .default(CONFIG_DEFAULTS.relayPath)
      .transform((base) => base.replace(/\/+$/, ""))
      .meta({ description: "Base path of the relay's endpoints (<path>/open, <path>/topup)." }),
  }).refine(() => env[RELAYER_KEY_ENV] !== undefined, {
    error: `the relay needs ${RELAYER_KEY_ENV} in the environment`,
    abort: true,
  });
  return z
    .union([z.literal(false), z.null(), settings], {
      error: (issue) => `must be an object like { "path": "/paychan/relay" } or false, got ${show(issue.input)}`,
    })
    .optional()
    .meta({
      description: `The gasless open and top-up relay; default on exactly when ${RELAYER_KEY_ENV} is set; false turns it off.`,
    });
}

function exactSchema(env: Context["env"]) {
  const settings = strictObject(`an object like { "facilitatorUrl": "https://…" }, {} or false`, {
    facilitatorUrl: url().optional().meta({
      description:
        "A hosted x402 facilitator that settles the transfers (POST <url>/settle); default: the relayer key.",
    }),
  }).refine((settings) => settings.facilitatorUrl !== undefined || env[RELAYER_KEY_ENV] !== undefined, {
    error: `exact payments are settled with ${RELAYER_KEY_ENV}: set it, or give a facilitatorUrl`,
    abort: true,
  });
  return z
    .union([z.literal(false), z.null(), settings], {
      error: (issue) =>
        `must be an object like { "facilitatorUrl": "https://…" }, {} or false, got ${show(issue.input)}`,
    })
    .optional()
    .meta({
      description: `x402 \`exact\` payments beside \`channel\`; default on exactly when ${RELAYER_KEY_ENV} is set; false turns it off.`,
    });
}

function settlerSchema(decimals: number) {
  const gweiProblem = (issue: { input?: unknown }) => `must be a positive number of gwei, got ${show(issue.input)}`;
  return strictObject("an object", {
    minUnclaimed: amount(decimals, "amount")
      .prefault(SETTLER_DEFAULTS.minUnclaimed)
      .meta({ description: "A channel is claimed once this much is unclaimed." }),
    maxAgeSec: integer({ min: 1, max: 365 * 24 * 3600, unit: "seconds" })
      .default(SETTLER_DEFAULTS.maxAgeSec)
      .meta({ description: "A channel is also claimed once its oldest unclaimed voucher is this old (seconds)." }),
    // A claimBatch item costs about 12,000 gas: 1,000 items stay far below any block gas limit.
    maxBatchSize: integer({ min: 1, max: 1_000 })
      .default(SETTLER_DEFAULTS.maxBatchSize)
      .meta({ description: "Most channels in one claimBatch transaction." }),
    maxGasPriceGwei: z
      .union([z.number().positive({ error: gweiProblem }), z.string().regex(GWEI, { error: gweiProblem })], {
        error: gweiProblem,
      })
      .transform((gwei, ctx) => {
        const text = String(gwei);
        if (GWEI.test(text) && !/^0+(\.0+)?$/.test(text)) return parseGwei(text);
        ctx.issues.push({ code: "custom", input: gwei, message: gweiProblem({ input: gwei }) });
        return z.NEVER;
      })
      .optional()
      .meta({ description: "Routine claims wait while the gas price is above this (gwei); urgent ones never wait." }),
    intervalSec: integer({ min: 1, max: 24 * 3600, unit: "seconds" })
      .default(SETTLER_DEFAULTS.intervalSec)
      .meta({ description: "Seconds between scheduled passes; at most a third of minWithdrawDelay." }),
    replaceAfterMs: integer({ min: 1_000, max: 3_600_000, unit: "ms" })
      .default(SETTLER_DEFAULTS.replaceAfterMs)
      .meta({ description: "A claim not mined after this long (ms) is sent again with higher fees." }),
    feeBumpPercent: integer({ min: 10, max: 1_000 })
      .default(SETTLER_DEFAULTS.feeBumpPercent)
      .meta({ description: "Fee increase of each replacement (percent)." }),
    sendTimeoutMs: integer({ min: 10_000, max: 24 * 3_600_000, unit: "ms" })
      .default(SETTLER_DEFAULTS.sendTimeoutMs)
      .meta({ description: "A claim without a final receipt after this long (ms) is given up, and claimed again." }),
    watch: boolean()
      .default(SETTLER_DEFAULTS.watch)
      .meta({ description: "Follow withdrawal requests with a chain watcher of the settler's own." }),
  })
    .prefault({})
    .meta({ description: "When and how the batch settler claims (paychan settle, and paychan server)." });
}

const GWEI = /^\d+(\.\d{1,9})?$/;
const ENDPOINT_PATH = /^\/(?!.*\/\/)[A-Za-z0-9._~\-/]*$/;
const NETWORK_IDS = [...new Set(Object.values(NETWORKS).flatMap((n) => [n.name, n.caip2]))] as [string, ...string[]];
const NETWORK_NAMES = Object.keys(NETWORKS).join(", ");

/** An object that names each unknown key and lists the known ones. */
function strictObject<Shape extends z.ZodRawShape>(expected: string, shape: Shape) {
  const known = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === "unrecognized_keys") {
        const keys = issue.keys.map((key) => JSON.stringify(key)).join(", ");
        return `unknown key${issue.keys.length > 1 ? "s" : ""} ${keys} (known: ${known})`;
      }
      return `must be ${expected}, got ${show(issue.input)}`;
    },
  });
}

function integer(o: { min: number; max: number; unit?: string; why?: string }) {
  const notWhole = (issue: { input?: unknown }) =>
    `must be a whole number${o.unit ? ` of ${o.unit}` : ""}, got ${show(issue.input)}`;
  const outside = (issue: { input?: unknown }) =>
    `${String(issue.input)} is outside [${o.min}, ${o.max}]${o.why ? ` (${o.why})` : ""}`;
  return z
    .number({ error: notWhole })
    .int({ error: notWhole, abort: true })
    .min(o.min, { error: outside })
    .max(o.max, { error: outside });
}

function nonEmptyString() {
  const problem = (issue: { input?: unknown }) => `must be a non-empty string, got ${show(issue.input)}`;
  return z.string({ error: problem }).regex(/\S/, { error: problem });
}

function boolean() {
  return z.boolean({ error: "must be true or false" });
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, {
    error: (issue) => `must be one of ${values.map((v) => `"${v}"`).join(", ")}, got ${show(issue.input)}`,
  });
}

/** A built-in endpoint's absolute path, or null to disable it. */
function endpointPath() {
  const problem = (issue: { input?: unknown }) =>
    `must be an absolute path like "/healthz" (or null to disable), got ${show(issue.input)}`;
  return z.string({ error: problem }).regex(ENDPOINT_PATH, { error: problem }).nullable();
}

function url(missing = "required; an http:// or https:// URL") {
  return z
    .string({
      error: (issue) =>
        issue.input === undefined ? missing : `must be an http:// or https:// URL string, got ${show(issue.input)}`,
    })
    .transform((text, ctx) => {
      let parsed: URL | undefined;
      try {
        parsed = new URL(text);
      } catch {
        parsed = undefined;
      }
      const problem = !parsed
        ? "is not a valid URL"
        : parsed.protocol !== "http:" && parsed.protocol !== "https:"
          ? "must use http:// or https://"
          : parsed.search || parsed.hash
            ? "must not have a query or fragment"
            : undefined;
      if (!parsed || problem) {
        ctx.issues.push({ code: "custom", input: text, message: `${show(text)} ${problem}` });
        return z.NEVER;
      }
      return parsed;
    });
}

function address(missing = "required; a 0x-prefixed 20-byte address") {
  const malformed = (issue: { input?: unknown }) =>
    issue.input === undefined ? missing : `${show(issue.input)} is not a 0x-prefixed 20-byte hex address`;
  return z
    .string({ error: malformed })
    .regex(/^0x[0-9a-fA-F]{40}$/, { error: malformed, abort: true })
    .transform((text, ctx) => {
      // Mixed case means EIP-55: a wrong checksum is almost always a typo, so refuse it.
      const problem = !isAddress(text, { strict: true })
        ? `${text} has an invalid EIP-55 checksum (write it all lowercase to skip the check)`
        : /^0x0{40}$/.test(text)
          ? "must not be the zero address"
          : undefined;
      if (!problem) return getAddress(text);
      ctx.issues.push({ code: "custom", input: text, message: problem });
      return z.NEVER;
    });
}

/** A price or amount in the token: "$1.50", "1500000" (atomic units) or a safe integer of atomic units. */
function amount(decimals: number, what: "amount" | "price") {
  return z
    .union(
      [
        z.string().regex(/^\s*(?:\$\d+(?:\.\d+)?|\d+)\s*$/, {
          error: (issue) =>
            `${what} ${show(issue.input)} must be "$<dollars>" (e.g. "$0.001") or a string of atomic units (e.g. "1000")`,
        }),
        z
          .number()
          .int({
            error: (issue) =>
              `${what} ${String(issue.input)} must be a whole number of atomic units, or a string like "$0.001"`,
          })
          .min(0, {
            error: (issue) =>
              `${what} ${String(issue.input)} must be a whole number of atomic units, or a string like "$0.001"`,
          }),
      ],
      {
        error: (issue) =>
          issue.input === undefined
            ? `a ${what} is required`
            : `${what} must be a string like "$0.001" or "1000" (atomic units), got ${show(issue.input)}`,
      },
    )
    .transform((value, ctx) => {
      let atomic: bigint;
      try {
        atomic = typeof value === "number" ? BigInt(value) : toAtomic(value, decimals);
      } catch {
        // The format is checked above: only too many decimals remain.
        ctx.issues.push({
          code: "custom",
          input: value,
          message: `${what} ${show(value)} has more than the token's ${decimals} decimals`,
        });
        return z.NEVER;
      }
      if (atomic <= MAX_AMOUNT) return atomic;
      ctx.issues.push({
        code: "custom",
        input: value,
        message: `${what} ${show(value)} exceeds the largest channel amount (2^96 - 1 atomic units)`,
      });
      return z.NEVER;
    });
}

/** A private key from the environment, never echoed in a message: it is a secret, and a near-miss is still most of one. */
function privateKey(missing?: string) {
  return z.string({ error: missing }).transform((value, ctx) => {
    const text = value.trim();
    const hex = /^0x[0-9a-fA-F]{64}$/.test(text) ? text : /^[0-9a-fA-F]{64}$/.test(text) ? `0x${text}` : undefined;
    const problem = !hex
      ? "must be a 32-byte hex private key (64 hex digits, optionally 0x-prefixed)"
      : BigInt(hex) === 0n || BigInt(hex) >= SECP256K1_N
        ? "is not a valid secp256k1 private key (must be in [1, n-1])"
        : undefined;
    if (hex && !problem) return hex.toLowerCase() as Hex;
    ctx.issues.push({ code: "custom", input: "[redacted]", message: problem as string });
    return z.NEVER;
  });
}

/** The fields {@link duplicateEndpoint} reads, as they stand after their own validation. */
interface FileLike {
  readonly healthPath?: unknown;
  readonly metricsPath?: unknown;
  readonly relay?: unknown;
}

/** A built-in endpoint path used twice, if any. */
function duplicateEndpoint(file: FileLike, env: Context["env"]): string | undefined {
  const relay =
    file.relay === undefined ? (env[RELAYER_KEY_ENV] ? { path: CONFIG_DEFAULTS.relayPath } : null) : file.relay;
  const relayPath = isRecord(relay) && typeof relay.path === "string" ? relay.path : undefined;
  const paths = [
    file.healthPath,
    file.metricsPath,
    relayPath && `${relayPath}/open`,
    relayPath && `${relayPath}/topup`,
  ];
  const seen = new Set<unknown>();
  for (const p of paths) {
    if (typeof p !== "string") continue;
    if (seen.has(p)) return p;
    seen.add(p);
  }
  return undefined;
}

/** A cross-field check runs even when other fields failed, unless one of the fields it reads did. */
function unlessFailed(...fields: readonly (readonly PropertyKey[])[]) {
  return (payload: { issues: readonly { path?: readonly PropertyKey[] }[] }) =>
    !payload.issues.some((issue) => fields.some((field) => field.every((key, i) => issue.path?.[i] === key)));
}

/** One issue as lines "config.path: problem" or "environment NAME: problem"; unions report the branch the value was meant for. */
function describeIssue(issue: z.core.$ZodIssue): string[] {
  if (issue.code === "invalid_union") {
    const meant = issue.errors.filter((branch) => !branch.every(isTypeMismatch));
    if (meant.length === 1)
      return meant[0].flatMap((inner) => describeIssue({ ...inner, path: [...issue.path, ...inner.path] }));
  }
  if (issue.code === "invalid_key") {
    return issue.issues.flatMap((inner) => describeIssue({ ...inner, path: [...issue.path, ...inner.path] }));
  }
  return [`${where(issue.path)}: ${issue.message}`];
}

/** Whether a union branch failed only because the value has another type (so it was not meant for that branch). */
function isTypeMismatch(issue: z.core.$ZodIssue): boolean {
  if (issue.path.length !== 0) return false;
  if (issue.code === "invalid_union") return issue.errors.every((branch) => branch.every(isTypeMismatch));
  // zod reports a fraction given for an integer as invalid_type too, but that number was meant for the branch.
  return (issue.code === "invalid_type" && issue.expected !== "int") || issue.code === "invalid_value";
}

/** "config.routes['GET /x'].price" for ["file", "routes", "GET /x", "price"]; "environment NAME" for ["env", NAME]. */
function where(issuePath: readonly PropertyKey[]): string {
  const [part, ...keys] = issuePath;
  if (part === "env") return `environment ${String(keys[0])}`;
  let text = "config";
  for (const key of keys) {
    text +=
      typeof key === "number"
        ? `[${key}]`
        : typeof key === "string" && /^[A-Za-z_$][\w$]*$/.test(key)
          ? `.${key}`
          : `['${String(key)}']`;
  }
  return text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

function withoutKey(record: Record<string, unknown>, key: string): Record<string, unknown> {
  const { [key]: _removed, ...rest } = record;
  return rest;
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
