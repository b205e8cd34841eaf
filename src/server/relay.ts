import type http from "node:http";
import {
  BaseError,
  encodeFunctionData,
  getAddress,
  isAddress,
  isAddressEqual,
  parseEventLogs,
  recoverTypedDataAddress,
  serializeSignature,
  zeroAddress,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { paymentChannelsAbi } from "../chain/abi";
import { decodeRevert } from "../chain/decodeRevert";
import { transportFailure } from "../chain/rpcFailure";
import { readChannel } from "../chain/readChannel";
import {
  openAuthorizationNonce,
  receiveWithAuthorizationTypedData,
  topUpAuthorizationNonce,
  type TokenDomain,
} from "../protocol/authorization";
import { channelIdHex } from "../protocol/headers";
import { RELAY_ERRORS, type RelayErrorCode } from "../protocol/relayErrors";
import { MAX_AMOUNT } from "../protocol/voucher";
import type { ChannelRecord } from "../protocol/channel";
import { CONTRACT_MAX_WITHDRAW_DELAY } from "../shared/config";
import { silentLogger, type Logger } from "../shared/log";
import type { PaymentMetrics } from "./metrics";
import type { RelayEndpoint } from "./proxy";

/**
 * The gasless relay: a payer who holds the token but no ETH signs an EIP-3009
 * `receiveWithAuthorization` and POSTs it here; the server checks it and submits
 * `openWithAuthorization` (or `topUpWithAuthorization`) from its relayer key, paying the gas.
 *
 * The authorization's nonce commits to the channel parameters (payee, signer, delay, salt), so
 * the relayer cannot redirect the money; what the relay must guard is its own gas. Everything
 * that can be checked offline is checked first (terms, the signature itself), then the call is
 * simulated, so a transaction is only sent when it will succeed. Sends go through one
 * serializing {@link TransactionSender}-like queue, so concurrent requests never race for a nonce.
 *
 * POST <path>/open
 * ```json
 * { "payer": "0x…", "signer": "0x…", "withdrawDelay": 86400, "amount": "5000000",
 *   "payee": "0x… (optional: must be this server's)", "token": "0x… (optional: must be this server's)",
 *   "authorization": { "validAfter": "0", "validBefore": "1767225600", "salt": "0x…32 bytes",
 *                      "v": 27, "r": "0x…", "s": "0x…" } }
 * ```
 * POST <path>/topup
 * ```json
 * { "channelId": "0x…", "amount": "5000000", "authorization": { … } }
 * ```
 * Both answer 200 `{ "channelId": "0x…", "txHash": "0x…", "deposit": "…" }` once the
 * transaction has its receipt; errors are `{ "error": code, "message": text, "fix": text }` (with
 * `txHash` when one was sent), the codes and statuses of src/protocol/relayErrors.ts: 400
 * (malformed), 413 (body too large), 422 (terms refused, bad signature, or the simulated call
 * reverts: insufficient balance, expired or used authorization...), 429 (relay busy), 502/503/504
 * (chain failure, token paused, no receipt in time).
 */

/** Sends one contract call and resolves with its receipt (the settler's TransactionSender fits). */
export interface RelaySender {
  readonly address: Address;
  send(
    to: Address,
    data: Hex,
    onBroadcast?: (hash: Hex, nonce: number) => void,
  ): Promise<{ status: "success" | "reverted"; transactionHash: Hex; logs: readonly unknown[] }>;
}

export interface RelayOptions {
  /** Base path; `<path>/open` and `<path>/topup` are served. */
  readonly path: string;
  readonly publicClient: PublicClient;
  readonly sender: RelaySender;
  readonly chainId: number;
  readonly contract: Address;
  readonly payee: Address;
  /** The tokens channels may be opened in; an open naming no token uses the first. */
  readonly tokens: readonly { readonly address: Address; readonly name: string; readonly version: string }[];
  /** Smallest deposit of an open, and smallest top-up (each costs the relayer a transaction). */
  readonly minDeposit: bigint;
  readonly minWithdrawDelay: number;
  /** An authorization must stay valid at least this long after it arrives (seconds). Default 120. */
  readonly minValiditySec?: number;
  /** Concurrent relay requests beyond this get 429. Default 8. */
  readonly maxConcurrent?: number;
  /** Largest request body, bytes. Default 8 KiB. */
  readonly maxBodyBytes?: number;
  /** Called with the new channel state after a successful open or top-up (to prime the engine). */
  readonly onChannel?: (channelId: bigint) => void;
  readonly logger?: Logger;
  readonly metrics?: PaymentMetrics;
  /** Unix seconds; injectable for tests. */
  readonly nowSec?: () => number;
}

/** A relay failure: its code (src/protocol/relayErrors.ts gives the HTTP status and the fix) and what happened. */
export class RelayError extends Error {
  readonly status: number;

  constructor(
    readonly code: RelayErrorCode,
    message: string,
    readonly txHash?: Hex,
  ) {
    super(message);
    this.name = "RelayError";
    this.status = RELAY_ERRORS[code].status;
  }
}

/** What a successful relay returns. */
export interface RelayResult {
  readonly channelId: Hex;
  readonly txHash: Hex;
  /** The channel's deposit after the transaction. */
  readonly deposit: string;
}

interface Authorization {
  readonly validAfter: bigint;
  readonly validBefore: bigint;
  readonly salt: Hex;
  readonly v: number;
  readonly r: Hex;
  readonly s: Hex;
}

const BYTES32 = /^0x[0-9a-fA-F]{64}$/;
const UINT = /^(0|[1-9][0-9]{0,77})$/;
const MAX_UINT256 = (1n << 256n) - 1n;
const HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** The relay endpoints. */
export class GaslessRelay implements RelayEndpoint {
  readonly path: string;
  private readonly log: Logger;
  private readonly domains: readonly TokenDomain[];
  private active = 0;

  constructor(private readonly options: RelayOptions) {
    this.path = options.path;
    this.log = options.logger ?? silentLogger;
    this.domains = options.tokens.map((token) => ({
      name: token.name,
      version: token.version,
      chainId: options.chainId,
      verifyingContract: token.address,
    }));
  }

  /** Node http handler for `<path>/open` and `<path>/topup`. Never throws. */
  async handle(operation: "open" | "topup", req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const limit = this.options.maxConcurrent ?? 8;
    if (this.active >= limit) {
      this.respond(res, operation, new RelayError("relay_busy", "too many relay requests in flight; retry shortly"));
      return;
    }
    this.active++;
    try {
      const body = await readJson(req, this.options.maxBodyBytes ?? 8 * 1024);
      const result = operation === "open" ? await this.open(body) : await this.topUp(body);
      this.respond(res, operation, result);
    } catch (error) {
      this.respond(res, operation, error);
    } finally {
      this.active--;
    }
  }

  /** Validates and relays an `openWithAuthorization`. */
  async open(body: unknown): Promise<RelayResult> {
    const input = asObject(body);
    const payer = requireAddress(input.payer, "payer");
    if (input.payee !== undefined && !isAddressEqual(requireAddress(input.payee, "payee"), this.options.payee)) {
      throw new RelayError("wrong_payee", `this server only relays channels paying ${this.options.payee}`);
    }
    const domain = input.token === undefined ? this.domains[0] : this.domainOf(requireAddress(input.token, "token"));
    if (!domain) {
      const accepted = this.domains.map((d) => d.verifyingContract).join(", ");
      throw new RelayError("wrong_token", `this server only accepts ${accepted}`);
    }
    // The nonce hashes the signer argument exactly as the contract receives it: zero stays zero.
    const signer = input.signer === undefined ? zeroAddress : requireAddress(input.signer, "signer", true);
    const withdrawDelay = input.withdrawDelay;
    if (typeof withdrawDelay !== "number" || !Number.isInteger(withdrawDelay)) {
      throw new RelayError("invalid_request", "withdrawDelay must be a whole number of seconds");
    }
    if (withdrawDelay < this.options.minWithdrawDelay || withdrawDelay > CONTRACT_MAX_WITHDRAW_DELAY) {
      throw new RelayError(
        "withdraw_delay_out_of_range",
        `withdrawDelay must be in [${this.options.minWithdrawDelay}, ${CONTRACT_MAX_WITHDRAW_DELAY}] seconds`,
      );
    }
    const amount = requireAmount(input.amount, "amount");
    if (amount < this.options.minDeposit) {
      throw new RelayError("deposit_too_small", `amount must be at least ${this.options.minDeposit} (atomic units)`);
    }
    const auth = this.parseAuthorization(input.authorization);
    const nonce = openAuthorizationNonce({ payee: this.options.payee, signer, withdrawDelay, salt: auth.salt });
    await this.requireSignedBy(domain, payer, amount, nonce, auth);

    const data = encodeFunctionData({
      abi: paymentChannelsAbi,
      functionName: "openWithAuthorization",
      args: [payer, this.options.payee, domain.verifyingContract, signer, withdrawDelay, amount, authTuple(auth)],
    });
    const receipt = await this.simulateAndSend("open", data);
    const opened = parseEventLogs({
      abi: paymentChannelsAbi,
      eventName: "ChannelOpened",
      logs: receipt.logs as Parameters<typeof parseEventLogs>[0]["logs"],
    }).find((log) => isAddressEqual(log.address, this.options.contract));
    if (!opened) {
      throw new RelayError(
        "no_channel_event",
        "the transaction succeeded without a ChannelOpened event",
        receipt.transactionHash,
      );
    }
    const channelId = opened.args.channelId;
    this.options.onChannel?.(channelId);
    return {
      channelId: channelIdHex(channelId),
      txHash: receipt.transactionHash,
      deposit: opened.args.deposit.toString(),
    };
  }

  /** Validates and relays a `topUpWithAuthorization`. */
  async topUp(body: unknown): Promise<RelayResult> {
    const input = asObject(body);
    if (typeof input.channelId !== "string" || !/^0x[0-9a-fA-F]{1,46}$/.test(input.channelId)) {
      throw new RelayError("invalid_request", "channelId must be a 0x-hex channel id");
    }
    const channelId = BigInt(input.channelId);
    const amount = requireAmount(input.amount, "amount");
    if (amount < this.options.minDeposit) {
      throw new RelayError("topup_too_small", `amount must be at least ${this.options.minDeposit} (atomic units)`);
    }
    const auth = this.parseAuthorization(input.authorization);
    let channel: ChannelRecord | undefined;
    try {
      channel = await readChannel(this.options.publicClient, this.options.contract, channelId);
    } catch (error) {
      throw new RelayError("chain_unavailable", `cannot read the channel: ${chainFailure(error)}`);
    }
    if (!channel) throw new RelayError("unknown_channel", "no such channel");
    if (!isAddressEqual(channel.payee, this.options.payee)) {
      throw new RelayError("wrong_payee", "the channel does not pay this server");
    }
    const domain = this.domainOf(channel.token);
    if (!domain) throw new RelayError("wrong_token", "the channel holds another token");
    if (channel.status !== "open") throw new RelayError("channel_closed", "the channel is closed");
    if (channel.withdrawReadyAt !== 0) {
      throw new RelayError(
        "channel_withdrawing",
        "a withdrawal is pending; cancel it (paychan withdraw --cancel) before topping up",
      );
    }
    if (channel.deposit + amount > MAX_AMOUNT) {
      throw new RelayError("deposit_too_large", "the deposit would exceed 2^96 - 1");
    }
    await this.requireSignedBy(domain, channel.payer, amount, topUpAuthorizationNonce(channelId, auth.salt), auth);

    const data = encodeFunctionData({
      abi: paymentChannelsAbi,
      functionName: "topUpWithAuthorization",
      args: [channelId, amount, authTuple(auth)],
    });
    const receipt = await this.simulateAndSend("topup", data);
    const topped = parseEventLogs({
      abi: paymentChannelsAbi,
      eventName: "ChannelToppedUp",
      logs: receipt.logs as Parameters<typeof parseEventLogs>[0]["logs"],
    }).find((log) => isAddressEqual(log.address, this.options.contract));
    this.options.onChannel?.(channelId);
    return {
      channelId: channelIdHex(channelId),
      txHash: receipt.transactionHash,
      deposit: (topped?.args.deposit ?? channel.deposit + amount).toString(),
    };
  }

  private parseAuthorization(value: unknown): Authorization {
    const a = asObject(value, "authorization");
    const validAfter = requireUint(a.validAfter, "authorization.validAfter");
    const validBefore = requireUint(a.validBefore, "authorization.validBefore");
    if (typeof a.salt !== "string" || !BYTES32.test(a.salt)) {
      throw new RelayError("invalid_request", "authorization.salt must be 32 bytes of 0x-hex");
    }
    if (typeof a.r !== "string" || !BYTES32.test(a.r) || typeof a.s !== "string" || !BYTES32.test(a.s)) {
      throw new RelayError("invalid_request", "authorization.r and authorization.s must be 32 bytes of 0x-hex");
    }
    let v = a.v;
    if (v === 0 || v === 1) v += 27;
    if (v !== 27 && v !== 28) throw new RelayError("invalid_request", "authorization.v must be 27 or 28");
    // High-s signatures are refused by OpenZeppelin's ECDSA (USDC uses the same rule).
    if (BigInt(a.s) > HALF_N) throw new RelayError("invalid_authorization", "authorization.s is high-s");
    const now = BigInt(this.nowSec());
    if (validAfter >= now) {
      throw new RelayError("authorization_not_yet_valid", "authorization.validAfter is not in the past");
    }
    const minValidity = BigInt(this.options.minValiditySec ?? 120);
    if (validBefore < now + minValidity) {
      throw new RelayError(
        "authorization_expiring",
        `authorization.validBefore must be at least ${minValidity} s in the future, so the transaction can land`,
      );
    }
    return { validAfter, validBefore, salt: a.salt as Hex, v, r: a.r as Hex, s: a.s as Hex };
  }

  /** Recovers the authorization offline: a forged or mistyped one costs us no RPC and no gas. */
  /** The EIP-712 domain of an accepted token; undefined for any other. */
  private domainOf(token: Address): TokenDomain | undefined {
    return this.domains.find((d) => isAddressEqual(d.verifyingContract, token));
  }

  private async requireSignedBy(
    domain: TokenDomain,
    from: Address,
    value: bigint,
    nonce: Hex,
    auth: Authorization,
  ): Promise<void> {
    let recovered: Address;
    try {
      recovered = await recoverTypedDataAddress({
        ...receiveWithAuthorizationTypedData(domain, {
          from,
          to: this.options.contract,
          value,
          validAfter: auth.validAfter,
          validBefore: auth.validBefore,
          nonce,
        }),
        signature: serializeSignature({ r: auth.r, s: auth.s, v: BigInt(auth.v) }),
      });
    } catch {
      throw new RelayError("invalid_authorization", "the authorization signature is malformed");
    }
    if (!isAddressEqual(recovered, from)) {
      throw new RelayError(
        "invalid_authorization",
        `the authorization is not signed by ${from} for these channel parameters (recovered ${recovered})`,
      );
    }
  }

  /** Simulates (no gas spent on a revert), then sends through the serializing sender. */
  private async simulateAndSend(
    operation: string,
    data: Hex,
  ): Promise<{ transactionHash: Hex; logs: readonly unknown[] }> {
    const { publicClient, sender, contract } = this.options;
    try {
      await publicClient.call({ account: sender.address, to: contract, data });
    } catch (error) {
      throw (
        revertError(operation, error) ??
        new RelayError("chain_unavailable", `cannot simulate the ${operation}: ${chainFailure(error)}`)
      );
    }
    let txHash: Hex | undefined;
    let receipt: Awaited<ReturnType<RelaySender["send"]>>;
    try {
      receipt = await sender.send(contract, data, (hash) => {
        txHash = hash;
        this.log.info("relay transaction sent", { operation, txHash: hash });
      });
    } catch (error) {
      const reverted = txHash === undefined ? revertError(operation, error) : undefined;
      if (reverted) throw reverted;
      // Sent but unconfirmed: the payer's money may still move, so say which transaction to watch.
      throw new RelayError(
        txHash ? "receipt_timeout" : "send_failed",
        `the ${operation} transaction ${txHash ? `${txHash} has no final receipt yet` : "could not be sent"}: ${chainFailure(error)}`,
        txHash,
      );
    }
    if (receipt.status !== "success") {
      throw new RelayError("reverted", `the ${operation} transaction reverted on-chain`, receipt.transactionHash);
    }
    return receipt;
  }

  private respond(res: http.ServerResponse, operation: string, outcome: unknown): void {
    let status: number;
    let body: Record<string, unknown>;
    if (outcome instanceof RelayError) {
      status = outcome.status;
      body = {
        error: outcome.code,
        message: outcome.message,
        fix: RELAY_ERRORS[outcome.code].fix,
        ...(outcome.txHash ? { txHash: outcome.txHash } : {}),
      };
    } else if (outcome instanceof Error) {
      this.log.error("relay failed", { operation, err: outcome });
      status = 500;
      body = { error: "internal_error", message: "the relay failed unexpectedly" };
    } else {
      status = 200;
      body = outcome as Record<string, unknown>;
    }
    const result = status === 200 ? "ok" : status < 500 ? "rejected" : "failed";
    this.options.metrics?.relay.inc({ operation, result });
    if (status !== 200) this.log.info("relay refused", { operation, status, code: body.error });
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  }

  private nowSec(): number {
    return this.options.nowSec ? this.options.nowSec() : Math.floor(Date.now() / 1000);
  }
}

function authTuple(auth: Authorization) {
  return {
    validAfter: auth.validAfter,
    validBefore: auth.validBefore,
    salt: auth.salt,
    v: auth.v,
    r: auth.r,
    s: auth.s,
  };
}

/** Reads a JSON body of at most `limit` bytes. */
function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"]);
    if (declared > limit) {
      req.resume();
      reject(new RelayError("body_too_large", `the body must be at most ${limit} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(new RelayError("body_too_large", `the body must be at most ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(new RelayError("invalid_json", "the body must be a JSON object"));
      }
    });
    req.on("error", () => reject(new RelayError("invalid_request", "the request body was cut off")));
  });
}

function asObject(value: unknown, what = "the body"): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RelayError("invalid_request", `${what} must be a JSON object`);
  }
  return value as Record<string, unknown>;
}

function requireAddress(value: unknown, field: string, allowZero = false): Address {
  if (typeof value !== "string" || !isAddress(value, { strict: false })) {
    throw new RelayError("invalid_request", `${field} must be a 0x-prefixed 20-byte address`);
  }
  const address = getAddress(value);
  if (!allowZero && address === zeroAddress) throw new RelayError("invalid_request", `${field} must not be zero`);
  return address;
}

function requireUint(value: unknown, field: string): bigint {
  const text = typeof value === "number" && Number.isSafeInteger(value) ? String(value) : value;
  if (typeof text !== "string" || !UINT.test(text) || BigInt(text) > MAX_UINT256) {
    throw new RelayError("invalid_request", `${field} must be a non-negative integer (decimal string)`);
  }
  return BigInt(text);
}

function requireAmount(value: unknown, field: string): bigint {
  const amount = requireUint(value, field);
  if (amount === 0n || amount > MAX_AMOUNT) {
    throw new RelayError("invalid_request", `${field} must be in [1, 2^96 - 1] atomic units`);
  }
  return amount;
}

/** What a failed chain call says: the transport failure in a few words, else the RPC error's text. */
function chainFailure(error: unknown): string {
  const transport = transportFailure(error);
  if (transport !== undefined) return transport;
  if (error instanceof BaseError)
    return error.details && error.details !== error.shortMessage
      ? `${error.shortMessage} ${error.details}`
      : error.shortMessage;
  return error instanceof Error ? error.message : String(error);
}

/** FiatToken (Circle's USDC) revert strings, and the code each means. */
const TOKEN_REASONS: readonly (readonly [RegExp, RelayErrorCode])[] = [
  [/transfer amount exceeds balance|insufficient balance/i, "insufficient_balance"],
  [/authorization is expired/i, "authorization_expired"],
  [/authorization is not yet valid/i, "authorization_not_yet_valid"],
  [/authorization is used or canceled/i, "authorization_used"],
  [/invalid signature/i, "invalid_authorization"],
  [/blacklisted|blocklisted|blocked/i, "account_blocked"],
  [/paused/i, "token_paused"],
];

/** The custom errors of the contract and the tokens, and the code each means. */
const ERROR_CODES: Readonly<Record<string, RelayErrorCode>> = {
  ERC20InsufficientBalance: "insufficient_balance",
  MockUSDCAuthorizationExpired: "authorization_expired",
  MockUSDCAuthorizationNotYetValid: "authorization_not_yet_valid",
  MockUSDCAuthorizationUsed: "authorization_used",
  MockUSDCInvalidSigner: "invalid_authorization",
  ECDSAInvalidSignature: "invalid_authorization",
  ECDSAInvalidSignatureLength: "invalid_authorization",
  ECDSAInvalidSignatureS: "invalid_authorization",
  PaymentChannelsInvalidWithdrawDelay: "withdraw_delay_out_of_range",
  PaymentChannelsInvalidAmount: "deposit_too_large",
  PaymentChannelsSignerExhausted: "signer_exhausted",
  PaymentChannelsUnknownChannel: "unknown_channel",
  PaymentChannelsChannelClosed: "channel_closed",
  PaymentChannelsWithdrawalPending: "channel_withdrawing",
};

/**
 * The relay error of a reverted simulation or send: the revert decoded (custom error or revert
 * string) and named by its code, e.g. an insufficient balance or an expired authorization. Undefined
 * when `error` carries no revert (a transport failure), which the caller reports as such.
 */
function revertError(operation: string, error: unknown): RelayError | undefined {
  const revert = decodeRevert(error);
  if (revert === undefined) {
    // A node that says "reverted" without the data: still the contract's answer, not an outage.
    if (transportFailure(error) === undefined && /revert/i.test(chainFailure(error))) {
      return new RelayError("would_revert", `the ${operation} would revert: ${chainFailure(error)}`);
    }
    return undefined;
  }
  if (revert.kind === "unknown") {
    return new RelayError(
      "would_revert",
      `the ${operation} would revert with unknown data ${revert.data.slice(0, 10)}…`,
    );
  }
  if (revert.kind === "reason") {
    const code = TOKEN_REASONS.find(([pattern]) => pattern.test(revert.reason))?.[1] ?? "would_revert";
    return new RelayError(code, `the ${operation} would revert: the token says "${revert.reason}"`);
  }
  const code = ERROR_CODES[revert.name] ?? "would_revert";
  if (revert.name === "ERC20InsufficientBalance") {
    const [sender, balance, needed] = revert.args as [Address, bigint, bigint];
    return new RelayError(
      code,
      `the payer ${sender} holds ${balance} of the ${needed} atomic units the ${operation} needs`,
    );
  }
  const args = revert.args.map((arg) => String(arg)).join(", ");
  return new RelayError(code, `the ${operation} would revert: ${revert.name}(${args})`);
}
