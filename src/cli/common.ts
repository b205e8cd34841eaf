import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { createPublicClient, createWalletClient, http, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { NETWORKS, type NetworkInfo, type NetworkName } from "../chain/networks";
import type { SendingWallet } from "../client";
import { getChannelStatus, type ChannelStatus } from "../client/getChannelStatus";
import { transportFailure } from "../chain/rpcFailure";
import { errorText, formatFailure, type FailureContext } from "../shared/failure";

/**
 * Helpers shared by the `paychan` commands: `--network` parsing and RPC URLs, the payer key (from
 * the environment or an encrypted keystore file, never from the command line), a progress line
 * while a transaction is pending, and errors that say how to fix them.
 */

/** Environment variable holding the funding (payer) wallet's private key. */
export const PAYER_KEY_ENV = "PAYCHAN_PAYER_PRIVATE_KEY";
/** Environment variable holding the password of a `--keystore` file. */
export const KEYSTORE_PASSWORD_ENV = "PAYCHAN_KEYSTORE_PASSWORD";
/** Environment variable naming the client state directory. */
export const CLIENT_DIR_ENV = "PAYCHAN_CLIENT_DIR";

/** The networks a command's `--network` accepts (`hardhat` is the in-process chain: deploy dry runs only). */
export const CLI_NETWORKS: readonly NetworkName[] = [
  "base-sepolia",
  "optimism-sepolia",
  "base",
  "optimism",
  "arbitrum-sepolia",
  "localhost",
];

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/** A failure the user can fix; `fix` says how. Printed as "paychan <cmd>: <message>\n  fix: <fix>". */
export class CliError extends Error {
  constructor(
    message: string,
    readonly fix?: string,
    /** Exit code: 2 for usage and configuration problems, 1 for failures. */
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "CliError";
  }
}

export { errorText };

/**
 * Prints an error (with its fix, when it has one) and returns the exit code to use. An RPC or
 * HTTP failure becomes one line naming the URL (and, with `context.rpc`, the network and the
 * setting to change) plus its fix, never a stack trace; `PAYCHAN_DEBUG=1` adds the stack.
 */
export function reportError(commandName: string, error: unknown, context: FailureContext = {}): number {
  if (error instanceof CliError) {
    process.stderr.write(`paychan ${commandName}: ${error.message}\n${error.fix ? `  fix: ${error.fix}\n` : ""}`);
    return error.exitCode;
  }
  process.stderr.write(formatFailure(`paychan ${commandName}`, error, context));
  return 1;
}

/** The failure context of a command that talks to `network` through `rpcUrl` (from --rpc or the environment). */
export function rpcContext(network: NetworkInfo, rpcUrl: string): FailureContext {
  return { rpc: { network, rpcUrl, rpcSetting: "--rpc" } };
}

/** The state directory from --state, the environment, or ./.paychan. */
export function stateDir(option: string | undefined): string {
  return path.resolve(option ?? process.env[CLIENT_DIR_ENV] ?? ".paychan");
}

const KEY_FLAG = /^--?(?:private[-_]?key|priv[-_]?key|key|pk|secret|mnemonic|seed|payer[-_]?key)(?:=.*)?$/i;
const HEX_KEY = /^(?:0x)?[0-9a-fA-F]{64}$/;

/**
 * Throws when the arguments carry a private key (a `--key`-style flag or a bare 32-byte hex
 * value): a key on the command line lands in shell history and is visible to every user through
 * `ps`. Call before parsing, so the refusal wins over "unknown option".
 */
export function refuseKeyArguments(args: readonly string[]): void {
  for (const arg of args) {
    if (KEY_FLAG.test(arg) || HEX_KEY.test(arg)) {
      const shown = arg.startsWith("-") ? arg.split("=")[0] : "a private key";
      throw new CliError(
        `refusing ${shown} on the command line: it would be visible in shell history and to other users (ps)`,
        `set ${PAYER_KEY_ENV} in the environment, or pass --keystore <file> with the password in ` +
          `${KEYSTORE_PASSWORD_ENV} (or typed at the prompt)`,
      );
    }
  }
}

/** The network named by `--network` (default `fallback`). */
export function parseNetwork(
  value: string | undefined,
  fallback?: NetworkName,
  extra: NetworkName[] = [],
): NetworkInfo {
  const name = value ?? fallback;
  const allowed = [...CLI_NETWORKS, ...extra];
  if (name === undefined) {
    throw new CliError("--network is required", `pass --network <${allowed.join("|")}>`);
  }
  if (!(allowed as string[]).includes(name)) {
    throw new CliError(`unknown network "${name}"`, `use --network with one of: ${allowed.join(", ")}`);
  }
  return NETWORKS[name as NetworkName];
}

/**
 * The RPC URL of a network: `--rpc`, else its environment variable (e.g. BASE_SEPOLIA_RPC_URL),
 * else http://127.0.0.1:8545 for localhost.
 */
export function rpcUrlOf(network: NetworkInfo, option: string | undefined, env = process.env, rpcFlag = true): string {
  const url = option ?? env[network.rpcEnv];
  if (url) {
    try {
      new URL(url);
    } catch {
      throw new CliError(`${option ? "--rpc" : network.rpcEnv} is not a URL: "${url}"`, `use an http(s):// RPC URL`);
    }
    return url;
  }
  if (network.local) return "http://127.0.0.1:8545";
  throw new CliError(
    `no RPC URL for ${network.name}: ${network.rpcEnv} is not set`,
    `export ${network.rpcEnv}=https://<your ${network.name} JSON-RPC endpoint>${rpcFlag ? " (or pass --rpc <url>)" : ""}`,
  );
}

/**
 * A public client, and a wallet client for `account` when given. viem's chain table is loaded here,
 * on first use: it takes a few hundred ms, which commands that build no client and every --help
 * are spared.
 */
export async function clientsFor(
  network: NetworkInfo,
  rpcUrl: string,
  account?: PrivateKeyAccount,
): Promise<{ publicClient: PublicClient; wallet?: SendingWallet }> {
  const { viemChain } = await import("../chain/viemChain");
  const chain = viemChain(network, rpcUrl);
  const publicClient = createPublicClient({ chain, transport: http(rpcUrl) }) as PublicClient;
  if (!account) return { publicClient };
  return { publicClient, wallet: createWalletClient({ account, chain, transport: http(rpcUrl) }) };
}

/** Options of {@link loadKey}. */
export interface KeyOptions {
  /** `--keystore <file>`: an encrypted JSON keystore (Web3 Secret Storage v3, as geth, cast and ethers write). */
  readonly keystore?: string;
  /** The environment variable holding a plain key (default {@link PAYER_KEY_ENV}). */
  readonly envVar?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** What the key is for, in messages ("the payer wallet"). */
  readonly role?: string;
}

/**
 * The private key from `--keystore` (password from PAYCHAN_KEYSTORE_PASSWORD, or prompted on a
 * terminal) or from the environment variable. Never from an argument.
 */
export async function loadKey(options: KeyOptions = {}): Promise<Hex> {
  const env = options.env ?? process.env;
  const envVar = options.envVar ?? PAYER_KEY_ENV;
  const role = options.role ?? "the payer wallet";
  if (options.keystore !== undefined) return decryptKeystore(options.keystore, env);
  const key = env[envVar];
  if (!key) {
    throw new CliError(
      `no key for ${role}: ${envVar} is not set and no --keystore was given`,
      `export ${envVar}=0x<64 hex digits>, or pass --keystore <file> (password in ${KEYSTORE_PASSWORD_ENV})`,
    );
  }
  const normalized = key.startsWith("0x") ? key : `0x${key}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(normalized)) {
    throw new CliError(`${envVar} is not a private key`, `set ${envVar} to 0x followed by 64 hex digits`);
  }
  return normalized as Hex;
}

/** {@link loadKey} as a viem account. */
export async function loadAccount(options: KeyOptions = {}): Promise<PrivateKeyAccount> {
  return privateKeyToAccount(await loadKey(options));
}

async function decryptKeystore(file: string, env: NodeJS.ProcessEnv): Promise<Hex> {
  let json: string;
  try {
    json = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CliError(
      `cannot read keystore ${file}: ${code === "ENOENT" ? "file not found" : String(error)}`,
      "pass the path of an encrypted JSON keystore file to --keystore",
    );
  }
  let password = env[KEYSTORE_PASSWORD_ENV];
  if (password === undefined) {
    if (!process.stdin.isTTY || !process.stderr.isTTY) {
      throw new CliError(
        `no password for keystore ${file}: ${KEYSTORE_PASSWORD_ENV} is not set and there is no terminal to ask on`,
        `export ${KEYSTORE_PASSWORD_ENV}=<password>, or run the command in a terminal to be prompted`,
      );
    }
    password = await promptHidden(`password for ${path.basename(file)}: `);
  }
  // ethers reads every keystore flavour (scrypt or pbkdf2); loaded only when a keystore is used.
  const { Wallet } = await import("ethers");
  try {
    const wallet = await Wallet.fromEncryptedJson(json, password);
    return wallet.privateKey as Hex;
  } catch (error) {
    const message = (error as Error).message;
    if (/password/i.test(message)) {
      throw new CliError(`wrong password for keystore ${file}`, `check ${KEYSTORE_PASSWORD_ENV} or the typed password`);
    }
    throw new CliError(`cannot decrypt keystore ${file}: ${message}`, "pass a JSON keystore (version 3)");
  }
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    // NOTE: echo goes off before the prompt appears, so nothing typed right after it is shown.
    stdin.setRawMode(true);
    process.stderr.write(question);
    stdin.resume();
    let typed = "";
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(typed);
          return;
        }
        if (ch === "\u0003") {
          done();
          reject(new CliError("cancelled", undefined, 130));
          return;
        }
        if (ch === "\u007f" || ch === "\b") typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    const done = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    stdin.on("data", onData);
  });
}

/**
 * Shows `label` on stderr while `work` runs: a live line with the elapsed seconds on a terminal,
 * else one line when it starts and one when it ends; resolves with the result of `work`.
 */
export async function withProgress<T>(label: string, work: Promise<T>): Promise<T> {
  const started = Date.now();
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  const tty = Boolean(process.stderr.isTTY);
  let timer: NodeJS.Timeout | undefined;
  if (tty) {
    const frames = ["|", "/", "-", "\\"];
    let i = 0;
    const draw = () => process.stderr.write(`\r${frames[i++ % frames.length]} ${label} (${elapsed()})\u001b[K`);
    draw();
    timer = setInterval(draw, 200);
  } else {
    process.stderr.write(`${label} ...\n`);
  }
  try {
    const result = await work;
    process.stderr.write(`${tty ? "\r" : ""}${label}: done in ${elapsed()}${tty ? "\u001b[K" : ""}\n`);
    return result;
  } catch (error) {
    process.stderr.write(`${tty ? "\r" : ""}${label}: failed after ${elapsed()}${tty ? "\u001b[K" : ""}\n`);
    throw error;
  } finally {
    if (timer) clearInterval(timer);
  }
}

/**
 * Amounts of topup: token units (`5`, `2.5`) or dollars (`$5`, the same for a USD stablecoin),
 * turned into atomic units with `decimals`.
 */
export function parseTokenAmount(text: string, decimals: number, flag = "--amount"): bigint {
  const match = /^\$?(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match || (match[2] ?? "").length > decimals) {
    throw new CliError(`${flag} "${text}" is not an amount`, `pass token units like ${flag} 5 or ${flag} 2.50`);
  }
  const [, whole, fraction = ""] = match;
  const atomic = BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, "0") || "0");
  if (atomic === 0n) throw new CliError(`${flag} must be more than 0`, `pass token units like ${flag} 5`);
  return atomic;
}

/** A channel id from `--channel` (0x-hex or decimal). */
export function parseChannelId(text: string | undefined): bigint {
  if (!text) throw new CliError("--channel is required", "pass --channel <0x channel id> (see paychan status)");
  try {
    if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(text)) throw new Error();
    return BigInt(text);
  } catch {
    throw new CliError(
      `--channel "${text}" is not a channel id`,
      "pass the 0x-hex id printed by paychan open or status",
    );
  }
}

/**
 * The PaymentChannels contract on a network: `--contract`, else the client state (a channel the
 * client opened records its contract), else `deployments/<hardhat name>/PaymentChannels.json`.
 */
export function contractOf(
  network: NetworkInfo,
  option: string | undefined,
  channelId: bigint | undefined,
  stateFile: string | undefined,
): Hex {
  if (option) {
    if (!/^0x[0-9a-fA-F]{40}$/.test(option)) throw new CliError(`--contract "${option}" is not an address`);
    return option as Hex;
  }
  if (channelId !== undefined && stateFile && existsSync(stateFile)) {
    try {
      const state = JSON.parse(readFileSync(stateFile, "utf8")) as {
        channels?: Record<string, unknown>;
        offers?: Record<string, string>;
      };
      const id = `0x${channelId.toString(16)}`;
      // channels: <network>:<contract>:<id>; offers: <network>:<contract>:<payee>:<token> → id.
      for (const key of Object.keys(state.channels ?? {})) {
        const parts = key.split(":");
        if (`${parts[0]}:${parts[1]}` === network.caip2 && parts[3] === id) return parts[2] as Hex;
      }
      for (const [key, value] of Object.entries(state.offers ?? {})) {
        const parts = key.split(":");
        if (`${parts[0]}:${parts[1]}` === network.caip2 && BigInt(value) === channelId) return parts[2] as Hex;
      }
    } catch {
      // Not readable: fall through.
    }
  }
  const deployment = path.join(REPO_ROOT, "deployments", network.hardhatName, "PaymentChannels.json");
  if (existsSync(deployment)) return (JSON.parse(readFileSync(deployment, "utf8")) as { address: Hex }).address;
  throw new CliError(
    `no PaymentChannels contract known on ${network.name}`,
    `pass --contract <address> (the server's 402 offer names it in extra.contract)`,
  );
}

/**
 * The channel `--channel` names, read on-chain. An unreachable endpoint propagates (reportError
 * names it, with the fix); a failed read is said with the contract and network to check; a
 * channel that does not exist is a {@link CliError}.
 */
export async function channelOnChain(
  publicClient: PublicClient,
  contract: Hex,
  channelId: bigint,
  network: NetworkInfo,
): Promise<ChannelStatus> {
  const id = `0x${channelId.toString(16)}`;
  let status: ChannelStatus | undefined;
  try {
    status = await getChannelStatus({ publicClient, contract, channelId });
  } catch (error) {
    if (transportFailure(error) !== undefined) throw error;
    throw new CliError(
      `cannot read channel ${id} from ${contract} on ${network.name}: ${errorText(error)}`,
      `check --contract and --network: ${contract} must be the PaymentChannels contract on ${network.name}`,
      1,
    );
  }
  if (!status)
    throw new CliError(`no channel ${id} on ${contract} (${network.name})`, "check --channel and --network", 1);
  return status;
}

/** Lists `--name` flags the way `util.parseArgs` errors do not: "unknown option" with the usage. */
export function usageError(commandName: string, message: string, usage: string): number {
  process.stderr.write(`paychan ${commandName}: ${message}\n\n${usage}`);
  return 2;
}

type ParseOptions = NonNullable<ParseArgsConfig["options"]>;
const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;
type Parsed<O extends ParseOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof HELP_OPTION; allowPositionals: true }>
>;

/** The flags of commands that send a payer's transaction for a channel (topup, withdraw). */
export const CHANNEL_TRANSACTION_OPTIONS = {
  channel: { type: "string" },
  network: { type: "string" },
  rpc: { type: "string" },
  contract: { type: "string" },
  keystore: { type: "string" },
  state: { type: "string" },
} as const;

/**
 * Parses a command's arguments (`options` plus `--help`/`-h`): refuses key material on the command
 * line, reports an unknown or malformed flag with the usage (exit 2), and prints the usage for
 * --help (exit 0). Returns the
 * parsed flags and positionals, or the exit code when the command should stop here.
 */
export function parseCommandArgs<O extends ParseOptions>(
  commandName: string,
  usage: string,
  args: readonly string[],
  options: O,
  { positionals = false }: { positionals?: boolean } = {},
): Parsed<O> | number {
  let parsed: Parsed<O>;
  try {
    refuseKeyArguments(args);
  } catch (error) {
    return reportError(commandName, error);
  }
  try {
    parsed = parseArgs({ args: [...args], options: { ...options, ...HELP_OPTION }, allowPositionals: true });
    if (!positionals && parsed.positionals.length > 0) {
      throw new Error(
        `Unexpected argument '${parsed.positionals[0]}'. This command does not take positional arguments`,
      );
    }
  } catch (error) {
    return usageError(commandName, (error as Error).message, usage);
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(usage);
    return 0;
  }
  return parsed;
}
