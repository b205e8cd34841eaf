import type { Address, Hex } from "viem";
import type { ReasonCode } from "./reasons";
import type { SignedQuote } from "./quote";
import type { SignedReceipt } from "./receipt";
import { MAX_AMOUNT } from "./voucher";

/**
 * The x402 v2 HTTP transport as paychan speaks it: a 402 carries `PAYMENT-REQUIRED` (x402's
 * `PaymentRequired`), the client retries with `PAYMENT-SIGNATURE` (x402's `PaymentPayload`), the
 * paid response carries `PAYMENT-RESPONSE` (x402's `SettleResponse`); each header is base64 of
 * JSON. paychan's own data rides in the `extra` objects x402 reserves for schemes, so any x402
 * client can parse every header. docs/protocol.md documents every field.
 */
export const X402_VERSION = 2;
/** paychan's x402 scheme name. */
export const SCHEME = "channel";
export const PAYMENT_REQUIRED_HEADER = "payment-required";
export const PAYMENT_SIGNATURE_HEADER = "payment-signature";
export const PAYMENT_RESPONSE_HEADER = "payment-response";
/**
 * Largest PAYMENT-SIGNATURE header accepted, in bytes. paychan's client sends about 1,000 with a
 * short URL; x402's clients echo the whole offer and `resource` too, so the cap leaves room for a
 * long URL and description.
 */
export const MAX_PAYMENT_HEADER_BYTES = 8192;

/** How a route charges: a fixed price, or up to the price depending on what the handler did. */
export type Pricing = "fixed" | "upto";

/** The server's view of a channel, sent with some refusals so a client that lost its state can resume. */
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

/** The scheme data of a channel offer (x402's `PaymentRequirements.extra`). */
export interface ChannelOfferExtra {
  /** The token's EIP-712 domain name, for EIP-2612 / EIP-3009 signatures (as in every x402 EVM scheme). */
  readonly name: string;
  /** The token's EIP-712 domain version. */
  readonly version: string;
  /** The PaymentChannels contract. */
  readonly contract: Address;
  readonly pricing: Pricing;
  /** Smallest deposit the server accepts for a new channel, atomic units. */
  readonly minDeposit: string;
  /** Shortest withdraw delay (seconds) the server accepts for a channel. */
  readonly minWithdrawDelay: number;
  readonly decimals: number;
  /** Address whose signature is on every receipt. */
  readonly receiptSigner: Address;
  /** Path of the gasless open / top-up relay on this server, if it offers one. */
  readonly relay?: string;
  /** The server's view of the channel a refused voucher named, when the refusal carries one. */
  readonly channelState?: ChannelView;
  /**
   * The signed rate `amount` was computed at, for a token not charged at exactly one dollar; a
   * payment echoes it (or the channel-bound quote of an earlier `PAYMENT-RESPONSE`).
   */
  readonly quote?: SignedQuote;
  /** The route's price in dollars ("$0.001"), on offers of a server that prices in dollars. */
  readonly price?: string;
}

/** One entry of `accepts` (x402's `PaymentRequirements`): the terms for paying this resource through a channel. */
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
  readonly extra: ChannelOfferExtra;
}

/** x402's `ResourceInfo`: what is being paid for. */
export interface ResourceInfo {
  readonly url: string;
  readonly description?: string;
  readonly mimeType?: string;
}

/** Body of the PAYMENT-REQUIRED header (and of the 402 response): x402's `PaymentRequired`. */
export interface PaymentRequired {
  readonly x402Version: typeof X402_VERSION;
  readonly error?: ReasonCode;
  readonly resource: ResourceInfo;
  readonly accepts: readonly ChannelOffer[];
}

/** The voucher a client sends in PAYMENT-SIGNATURE (`payload`). */
export interface VoucherPayload {
  /** 0x-hex channel id. */
  readonly channelId: Hex;
  /** Cumulative amount, decimal atomic units. */
  readonly amount: string;
  /** 65-byte (or 64-byte EIP-2098) signature, 0x-hex. */
  readonly signature: Hex;
}

/** Body of the PAYMENT-SIGNATURE header: x402's `PaymentPayload`, echoing the offer it pays. */
export interface PaymentPayload {
  readonly x402Version: typeof X402_VERSION;
  readonly resource?: ResourceInfo;
  readonly accepted: ChannelOffer;
  readonly payload: VoucherPayload;
}

/** paychan's figures in a PAYMENT-RESPONSE (`extra`). */
export interface SettleExtra {
  readonly channelId: Hex;
  /** The cumulative voucher amount this request was paid with. */
  readonly voucherAmount: string;
  /** The token the channel pays in; `amount` and the receipt's figures are in its atomic units. */
  readonly asset?: Address;
  /** Dollars per whole token the request was charged at, 18 decimals ("1000000000000000000" for a dollar token); absent on a retry. */
  readonly rate?: string;
  /** The quote bound to this channel for its life, when the seller locks the rate per channel: send it with later vouchers. */
  readonly quote?: SignedQuote;
  /** Everything charged on the channel so far. */
  readonly chargedTotal: string;
  /** What the payer can still spend on the channel. */
  readonly remaining: string;
  readonly receipt: SignedReceipt;
}

/**
 * Body of the PAYMENT-RESPONSE header: x402's `SettleResponse`. A voucher is settled off-chain
 * (the server claims the best one later, in a batch), so `transaction` is empty; the signed
 * receipt in `extra` is the proof.
 */
export interface SettleResponse {
  readonly success: true;
  readonly transaction: "";
  readonly network: string;
  readonly payer: Address;
  /** What this request was charged, atomic units (the price, or less on an "upto" route). */
  readonly amount: string;
  readonly extra: SettleExtra;
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
  /** `accepted.extra.quote`, unchecked: the quote book verifies it when the channel's token needs one. */
  readonly quote?: unknown;
}

export type DecodeResult =
  { readonly ok: true; readonly voucher: DecodedVoucher } | { readonly ok: false; readonly reason: ReasonCode };

/**
 * The bytes of `text` when it is standard, padded base64 (what matches /^[A-Za-z0-9+/]*={0,2}$/
 * with a length that is a multiple of 4), else undefined. Node's decoder skips any other
 * character and stops at `=`, so a decoded length short of what the length promises means one
 * was there; it accepts base64url's `-` and `_` though, so those are looked for first. A scan
 * and one decode instead of a regular expression over the header and a decode.
 */
function strictBase64(text: string): Buffer | undefined {
  const n = text.length;
  if (n === 0 || n % 4 !== 0 || text.indexOf("-") >= 0 || text.indexOf("_") >= 0) return undefined;
  const padding = text.charCodeAt(n - 1) !== 61 ? 0 : text.charCodeAt(n - 2) !== 61 ? 1 : 2;
  const bytes = Buffer.from(text, "base64");
  return bytes.length === (n / 4) * 3 - padding ? bytes : undefined;
}
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
  const bytes = strictBase64(header);
  if (bytes === undefined) return { ok: false, reason: "malformed_header" };
  let body: unknown;
  try {
    body = JSON.parse(bytes.toString("utf8"));
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
      ...(extra?.quote !== undefined ? { quote: extra.quote } : {}),
    },
  };
}

/**
 * Builds a PAYMENT-SIGNATURE header for a voucher under an offer: the whole offer is echoed in
 * `accepted` (without the refusal's `channelState`), as x402's `PaymentPayload` requires.
 */
export function encodePaymentSignature(offer: ChannelOffer, voucher: VoucherPayload, resource?: ResourceInfo): string {
  const body: PaymentPayload = {
    x402Version: X402_VERSION,
    ...(resource ? { resource } : {}),
    accepted: offerTerms(offer),
    payload: voucher,
  };
  return encodeHeader(body);
}

/** The offer without the server's channel view a refusal may have added to it. */
export function offerTerms(offer: ChannelOffer): ChannelOffer {
  if (offer.extra.channelState === undefined) return offer;
  const { channelState: _view, ...extra } = offer.extra;
  return { ...offer, extra };
}

/** 0x-hex of a channel id, as used on the wire. */
export function channelIdHex(channelId: bigint): Hex {
  return `0x${channelId.toString(16)}`;
}
