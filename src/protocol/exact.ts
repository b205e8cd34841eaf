import { hashTypedData, isAddress, isAddressEqual, recoverAddress, type Address, type Hex } from "viem";
import type { TokenDomain } from "./authorization";
import type { ReasonCode } from "./reasons";

/**
 * x402's `exact` scheme on EVM with EIP-3009, the fallback paychan offers beside `channel`: the
 * buyer signs a `TransferWithAuthorization` of the price to the payee and the server submits it to
 * the token. One payment, one on-chain transfer; no channel. These are the wire types and the
 * offline checks; src/server/exactPayments.ts settles them.
 */

/** x402's scheme name for a one-off payment of the exact price. */
export const EXACT_SCHEME = "exact";

/**
 * Seconds an authorization must stay valid after it is checked: the server submits it and waits
 * for it to be mined, and the token refuses it from `validBefore` on (x402's facilitators use 6).
 */
export const EXACT_VALIDITY_MARGIN_SEC = 6;

/** One entry of `accepts` (x402's `PaymentRequirements`) for scheme `exact`. */
export interface ExactOffer {
  readonly scheme: typeof EXACT_SCHEME;
  /** CAIP-2 network id. */
  readonly network: string;
  /** The price, atomic units: the authorization must transfer at least this much. */
  readonly amount: string;
  /** The token (EIP-3009). */
  readonly asset: Address;
  /** Where the authorization must send the money: the payee. */
  readonly payTo: Address;
  /** The authorization should stay valid this long (x402 clients set `validBefore` = now + this). */
  readonly maxTimeoutSeconds: number;
  /** The token's EIP-712 domain name and version (x402's EVM schemes read them here). */
  readonly extra: { readonly name: string; readonly version: string };
}

/** x402's EIP-3009 `exact` payload (the `payload` of a PaymentPayload). */
export interface ExactPayload {
  readonly signature: Hex;
  readonly authorization: {
    readonly from: Address;
    readonly to: Address;
    /** Decimal strings, as x402 sends them. */
    readonly value: string;
    readonly validAfter: string;
    readonly validBefore: string;
    /** 32 random bytes chosen by the payer; the token refuses a nonce twice per payer. */
    readonly nonce: Hex;
  };
}

/**
 * A PAYMENT-RESPONSE for an `exact` payment: x402's `SettleResponse`. `transaction` is the mined
 * transfer, the payment's on-chain receipt.
 */
export interface ExactSettleResponse {
  readonly success: true;
  readonly transaction: Hex;
  readonly network: string;
  readonly payer: Address;
  /** What was transferred, atomic units. */
  readonly amount: string;
}

/** An EIP-3009 `TransferWithAuthorization` message, numbers parsed. */
export interface TransferWithAuthorization {
  readonly from: Address;
  readonly to: Address;
  readonly value: bigint;
  /** Valid strictly after this Unix time. */
  readonly validAfter: bigint;
  /** Valid strictly before this Unix time. */
  readonly validBefore: bigint;
  readonly nonce: Hex;
}

/** A decoded `exact` payment: what was accepted and the authorization. */
export interface DecodedExactPayment {
  readonly network: string;
  readonly asset?: string;
  readonly payTo?: string;
  readonly authorization: TransferWithAuthorization;
  /** 65-byte r ‖ s ‖ v, 0x-hex. */
  readonly signature: Hex;
}

/** EIP-712 types of EIP-3009 `transferWithAuthorization`, as defined by USDC (FiatToken v2). */
export const TRANSFER_WITH_AUTHORIZATION_TYPES = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

/** Typed data for signing a `TransferWithAuthorization` with a viem account or wallet client. */
export function transferWithAuthorizationTypedData(domain: TokenDomain, message: TransferWithAuthorization) {
  return {
    domain,
    types: TRANSFER_WITH_AUTHORIZATION_TYPES,
    primaryType: "TransferWithAuthorization" as const,
    message,
  };
}

const UINT = /^(0|[1-9][0-9]{0,77})$/;
const NONCE = /^0x[0-9a-fA-F]{64}$/;
// EOA signatures only: the token checks ECDSA signatures (smart-wallet signatures are refused).
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;
const MAX_UINT256 = (1n << 256n) - 1n;
const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function uint(value: unknown): bigint | undefined {
  if (typeof value !== "string" || !UINT.test(value)) return undefined;
  const parsed = BigInt(value);
  return parsed <= MAX_UINT256 ? parsed : undefined;
}

/**
 * Reads an `exact` PaymentPayload (already JSON-decoded) without throwing: `undefined` when it is
 * not an `exact` payment at all (the caller treats it as another scheme), a reason code when it
 * is one but malformed.
 */
export function decodeExactPayment(
  body: unknown,
):
  | { readonly ok: true; readonly payment: DecodedExactPayment }
  | { readonly ok: false; readonly reason: ReasonCode }
  | undefined {
  if (!isObject(body) || !isObject(body.accepted) || body.accepted.scheme !== EXACT_SCHEME) return undefined;
  const { accepted, payload } = body;
  const invalid = { ok: false, reason: "invalid_payload" } as const;
  if (typeof accepted.network !== "string" || !isObject(payload)) return invalid;
  const asset = accepted.asset;
  const payTo = accepted.payTo;
  if ((asset !== undefined && typeof asset !== "string") || (payTo !== undefined && typeof payTo !== "string")) {
    return invalid;
  }
  const { signature, authorization: a } = payload;
  if (!isObject(a)) return invalid;
  const value = uint(a.value);
  const validAfter = uint(a.validAfter);
  const validBefore = uint(a.validBefore);
  if (
    typeof a.from !== "string" ||
    !isAddress(a.from, { strict: false }) ||
    typeof a.to !== "string" ||
    !isAddress(a.to, { strict: false }) ||
    value === undefined ||
    validAfter === undefined ||
    validBefore === undefined ||
    typeof a.nonce !== "string" ||
    !NONCE.test(a.nonce)
  ) {
    return invalid;
  }
  if (typeof signature !== "string" || !SIGNATURE.test(signature)) return { ok: false, reason: "malformed_signature" };
  return {
    ok: true,
    payment: {
      network: accepted.network,
      ...(asset !== undefined ? { asset } : {}),
      ...(payTo !== undefined ? { payTo } : {}),
      authorization: {
        from: a.from,
        to: a.to,
        value,
        validAfter,
        validBefore,
        nonce: a.nonce.toLowerCase() as Hex,
      },
      signature: signature as Hex,
    },
  };
}

/** What an `exact` payment must satisfy: this server's terms and the current time. */
export interface ExactTerms {
  readonly network: string;
  readonly domain: TokenDomain;
  readonly payTo: Address;
  /** The price, atomic units. */
  readonly price: bigint;
  /** Unix seconds. */
  readonly nowSec: number;
  /** Default {@link EXACT_VALIDITY_MARGIN_SEC}. */
  readonly validityMarginSec?: number;
}

/**
 * The offline checks of an `exact` payment, cheapest first: network, token, payee, value ≥ price,
 * the validity window (`validAfter` not in the future, `validBefore` at least the margin away), and that `from` signed the authorization
 * under the token's EIP-712 domain (low-s, as the token's ECDSA requires). What only the chain
 * knows (balance, nonce already used on-chain) the settlement finds out.
 */
export async function verifyExactPayment(
  payment: DecodedExactPayment,
  terms: ExactTerms,
): Promise<{ readonly ok: true } | { readonly ok: false; readonly reason: ReasonCode }> {
  const a = payment.authorization;
  if (payment.network !== terms.network) return { ok: false, reason: "wrong_network" };
  if (payment.asset !== undefined && !sameAddress(payment.asset, terms.domain.verifyingContract)) {
    return { ok: false, reason: "wrong_token" };
  }
  if (!isAddressEqual(a.to, terms.payTo)) return { ok: false, reason: "wrong_payee" };
  if (payment.payTo !== undefined && !sameAddress(payment.payTo, terms.payTo))
    return { ok: false, reason: "wrong_payee" };
  if (a.value < terms.price) return { ok: false, reason: "insufficient_amount" };
  const now = BigInt(terms.nowSec);
  if (a.validAfter > now) return { ok: false, reason: "authorization_not_yet_valid" };
  if (a.validBefore < now + BigInt(terms.validityMarginSec ?? EXACT_VALIDITY_MARGIN_SEC)) {
    return { ok: false, reason: "authorization_expired" };
  }
  if (BigInt(`0x${payment.signature.slice(66, 130)}`) > SECP256K1_HALF_N)
    return { ok: false, reason: "high_s_signature" };
  let signer: Address;
  try {
    signer = await recoverAddress({
      hash: hashTypedData(transferWithAuthorizationTypedData(terms.domain, a)),
      signature: payment.signature,
    });
  } catch {
    return { ok: false, reason: "malformed_signature" };
  }
  if (!isAddressEqual(signer, a.from)) return { ok: false, reason: "invalid_signature" };
  return { ok: true };
}

function sameAddress(a: string, b: Address): boolean {
  return isAddress(a, { strict: false }) && isAddressEqual(a, b);
}
