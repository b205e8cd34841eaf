import type { Address, Hex } from "viem";
import type { ReasonCode } from "./reasons";
import type { SignedReceipt } from "./receipt";
import { MAX_AMOUNT } from "./voucher";

/**
 * The x402 v2 HTTP transport as paychan speaks it: a 402 carries `PAYMENT-REQUIRED`, the client
 * retries with `PAYMENT-SIGNATURE`, the paid response carries `PAYMENT-RESPONSE`; each header is
 * base64 of JSON. docs/protocol.md documents every field.
 */
export const X402_VERSION = 2;
/** paychan's x402 scheme name. */
export const SCHEME = "channel";
export const PAYMENT_REQUIRED_HEADER = "payment-required";
export const PAYMENT_SIGNATURE_HEADER = "payment-signature";
export const PAYMENT_RESPONSE_HEADER = "payment-response";
/** Largest PAYMENT-SIGNATURE header accepted, in bytes; a valid one is about 700. */
export const MAX_PAYMENT_HEADER_BYTES = 2048;

/** How a route charges: a fixed price, or up to the price depending on what the handler did. */
export type Pricing = "fixed" | "upto";

/** One entry of `accepts`: the terms for paying this resource through a channel. */
export interface ChannelOffer {
  readonly scheme: typeof SCHEME;
  /** CAIP-2 network id, e.g. "eip155:84532". */
  readonly network: string;
  /** Price of one request in atomic units (the maximum, for "upto" pricing). */
  readonly amount: string;
  /** The token contract. */
  readonly asset: Address;
  /** The payee: channels must name this address. */
  readonly payTo: Address;
  readonly maxTimeoutSeconds: number;
  readonly extra: {
    /** The PaymentChannels contract. */
    readonly contract: Address;
    readonly pricing: Pricing;
    /** Smallest deposit the server accepts for a new channel, atomic units. */
    readonly minDeposit: string;
    /** Shortest withdraw delay (seconds) the server accepts for a channel. */
    readonly minWithdrawDelay: number;
    /** The token's EIP-712 domain name and version, for EIP-2612 / EIP-3009 signatures. */
    readonly tokenName: string;
    readonly tokenVersion: string;
    readonly decimals: number;
    /** Address whose signature is on every receipt. */
    readonly receiptSigner: Address;
    /** Path of the gasless open / top-up relay on this server, if it offers one. */
    readonly relay?: string;
  };
}

/** The server's view of a channel, sent with a 402 so a client that lost its state can resume. */
export interface ChannelView {
  readonly channelId: Hex;
  readonly deposit: string;
  readonly chargedTotal: string;
  /**
   * Highest voucher amount the server holds for this channel. Its signature is not sent: anyone
   * can provoke a 402, and a client can sign the same voucher again (signatures are deterministic).
   */
  readonly highestAmount: string;
  /** What the payer can still spend: deposit − chargedTotal. */
  readonly remaining: string;
  /** Unix seconds; 0 when no withdrawal is pending. */
  readonly withdrawReadyAt: number;
}

/** Body of the PAYMENT-REQUIRED header (and of the 402 response). */
export interface PaymentRequired {
  readonly x402Version: typeof X402_VERSION;
  readonly error?: ReasonCode;
  readonly resource: { readonly url: string; readonly description?: string; readonly mimeType?: string };
  readonly accepts: readonly ChannelOffer[];
  readonly channel?: ChannelView;
}

/** The voucher a client sends in PAYMENT-SIGNATURE. */
export interface VoucherPayload {
  /** 0x-hex channel id. */
  readonly channelId: Hex;
  /** Cumulative amount, decimal atomic units. */
  readonly amount: string;
  /** 65-byte (or 64-byte EIP-2098) signature, 0x-hex. */
  readonly signature: Hex;
}

/** Body of the PAYMENT-SIGNATURE header. */
export interface PaymentPayload {
  readonly x402Version: typeof X402_VERSION;
  readonly accepted: {
    readonly scheme: string;
    readonly network: string;
    readonly asset?: Address;
    readonly payTo?: Address;
    readonly extra?: { readonly contract?: Address };
  };
  readonly payload: VoucherPayload;
}

/** Body of the PAYMENT-RESPONSE header. */
export interface PaymentResponse {
  readonly success: true;
  readonly scheme: typeof SCHEME;
  readonly network: string;
  readonly payer: Address;
  readonly channelId: Hex;
  /** The voucher amount this request was paid with. */
  readonly amount: string;
  /** What this request was charged. */
  readonly charge: string;
  /** Everything charged on the channel so far. */
  readonly chargedTotal: string;
  /** What the payer can still spend on the channel. */
  readonly remaining: string;
  readonly receipt: SignedReceipt;
}

/** A decoded voucher with numbers parsed. */
export interface DecodedVoucher {
  readonly channelId: bigint;
  readonly amount: bigint;
  readonly signature: Hex;
  readonly network: string;
  readonly scheme: string;
  readonly asset?: string;
  readonly payTo?: string;
  readonly contract?: string;
}

export type DecodeResult =
  { readonly ok: true; readonly voucher: DecodedVoucher } | { readonly ok: false; readonly reason: ReasonCode };

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const CHANNEL_ID = /^0x[0-9a-fA-F]{1,46}$/;
const AMOUNT = /^(0|[1-9][0-9]{0,28})$/;
const SIGNATURE = /^0x(?:[0-9a-fA-F]{128}|[0-9a-fA-F]{130})$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalString(value: unknown): string | undefined | null {
  if (value === undefined) return undefined;
  return typeof value === "string" ? value : null;
}

/** Encodes a header body: base64 of its JSON. */
export function encodeHeader(body: object): string {
  const json = JSON.stringify(body);
  // Buffer where there is one (Node, the fast path); the paywall page's script runs where there is none.
  if (typeof Buffer === "function") return Buffer.from(json, "utf8").toString("base64");
  let binary = "";
  for (const byte of new TextEncoder().encode(json)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Decodes a header body written by {@link encodeHeader}; throws on malformed input. */
export function decodeHeader<T>(header: string): T {
  if (typeof Buffer === "function") return JSON.parse(Buffer.from(header, "base64").toString("utf8")) as T;
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(header), (c) => c.charCodeAt(0)))) as T;
}

/**
 * Decodes and validates a PAYMENT-SIGNATURE header without throwing: every defect maps to a
 * reason code. Sizes are capped before any parsing.
 */
export function decodePaymentSignature(header: string): DecodeResult {
  if (header.length > MAX_PAYMENT_HEADER_BYTES) return { ok: false, reason: "header_too_large" };
  if (header.length === 0 || header.length % 4 !== 0 || !BASE64.test(header)) {
    return { ok: false, reason: "malformed_header" };
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(header, "base64").toString("utf8"));
  } catch {
    return { ok: false, reason: "malformed_header" };
  }
  if (!isObject(body)) return { ok: false, reason: "malformed_header" };
  if (body.x402Version !== X402_VERSION) return { ok: false, reason: "unsupported_version" };
  const { accepted, payload } = body;
  if (!isObject(accepted) || !isObject(payload)) return { ok: false, reason: "invalid_payload" };
  const { scheme, network } = accepted;
  if (typeof scheme !== "string" || typeof network !== "string") return { ok: false, reason: "invalid_payload" };
  const asset = optionalString(accepted.asset);
  const payTo = optionalString(accepted.payTo);
  const extra = accepted.extra;
  if (extra !== undefined && !isObject(extra)) return { ok: false, reason: "invalid_payload" };
  const contract = optionalString(extra?.contract);
  if (asset === null || payTo === null || contract === null) return { ok: false, reason: "invalid_payload" };
  const { channelId, amount, signature } = payload;
  if (typeof channelId !== "string" || !CHANNEL_ID.test(channelId)) return { ok: false, reason: "invalid_payload" };
  if (typeof amount !== "string" || !AMOUNT.test(amount)) return { ok: false, reason: "invalid_payload" };
  if (typeof signature !== "string" || !SIGNATURE.test(signature)) return { ok: false, reason: "malformed_signature" };
  const value = BigInt(amount);
  if (value > MAX_AMOUNT) return { ok: false, reason: "invalid_payload" };
  return {
    ok: true,
    voucher: {
      channelId: BigInt(channelId),
      amount: value,
      signature: signature as Hex,
      network,
      scheme,
      asset,
      payTo,
      contract,
    },
  };
}

/** Builds a PAYMENT-SIGNATURE header for a voucher under an offer. */
export function encodePaymentSignature(offer: ChannelOffer, voucher: VoucherPayload): string {
  const body: PaymentPayload = {
    x402Version: X402_VERSION,
    accepted: {
      scheme: offer.scheme,
      network: offer.network,
      asset: offer.asset,
      payTo: offer.payTo,
      extra: { contract: offer.extra.contract },
    },
    payload: voucher,
  };
  return encodeHeader(body);
}

/** 0x-hex of a channel id, as used on the wire. */
export function channelIdHex(channelId: bigint): Hex {
  return `0x${channelId.toString(16)}`;
}
