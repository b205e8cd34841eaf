import { secp256k1 } from "@noble/curves/secp256k1";
import { getAddress, hashTypedData, hexToBytes, isAddress, isAddressEqual, keccak256, toHex } from "viem";
import type { Address, Hex } from "viem";

/**
 * Quotes: the server's signed promise to charge a voucher in a token other than the dollar at a
 * fixed exchange rate until the quote expires. The one definition of its EIP-712 type:
 *
 *   Quote(address token,uint256 rate,uint64 expiry,uint256 channelId)
 *
 * under the domain { name: "paychan quote", version: "1", chainId, verifyingContract: contract }.
 *
 * `rate` is the dollar value of one whole token with 18 decimals (1.08 USD per
 * EURC is 1080000000000000000). `channelId` 0 lets any channel pay under the quote (the quotes of
 * a 402, whose buyer the server does not know yet); a non-zero id binds it to that channel (the
 * quote a seller who locks rates for a channel's life returns after its first payment).
 */
export const QUOTE_TYPE_STRING = "Quote(address token,uint256 rate,uint64 expiry,uint256 channelId)";

export const QUOTE_TYPES = {
  Quote: [
    { name: "token", type: "address" },
    { name: "rate", type: "uint256" },
    { name: "expiry", type: "uint64" },
    { name: "channelId", type: "uint256" },
  ],
} as const;

export const QUOTE_DOMAIN_NAME = "paychan quote";
export const QUOTE_DOMAIN_VERSION = "1";
/** Expiry of a quote that lasts as long as its channel. */
export const QUOTE_NEVER_EXPIRES = 2 ** 53 - 1;

/** A quote's fields, before signing. */
export interface Quote {
  readonly token: Address;
  /** Dollars per whole token, 18 decimals (RATE_DECIMALS of price.ts). */
  readonly rate: bigint;
  /** Unix seconds after which the quote no longer holds. */
  readonly expiry: number;
  /** The channel the quote is bound to; 0 for any channel. */
  readonly channelId: bigint;
}

/** A quote on the wire (`extra.quote` of an offer, `accepted.extra.quote` of a payment). */
export interface SignedQuote {
  readonly token: Address;
  /** Decimal string. */
  readonly rate: string;
  readonly expiry: number;
  /** 0x-hex; "0x0" for any channel. */
  readonly channelId: Hex;
  /** The server's receipt signer. */
  readonly signer: Address;
  /** 65-byte r ‖ s ‖ v. */
  readonly signature: Hex;
}

function quoteDomain(chainId: number, contract: Address) {
  return { name: QUOTE_DOMAIN_NAME, version: QUOTE_DOMAIN_VERSION, chainId, verifyingContract: contract } as const;
}

/** Typed data of a quote, for signing with a viem account. */
export function quoteTypedData(chainId: number, contract: Address, quote: Quote) {
  return {
    domain: quoteDomain(chainId, contract),
    types: QUOTE_TYPES,
    primaryType: "Quote" as const,
    message: { ...quote, expiry: BigInt(quote.expiry) },
  };
}

/** The EIP-712 digest of a quote. */
export function quoteDigest(chainId: number, contract: Address, quote: Quote): Hex {
  return hashTypedData(quoteTypedData(chainId, contract, quote));
}

/** Signs a quote with the server's key (synchronously: quotes are signed on the 402 path). */
export function signQuote(privateKey: Hex, chainId: number, contract: Address, quote: Quote): SignedQuote {
  const digest = hexToBytes(quoteDigest(chainId, contract, quote));
  const sig = secp256k1.sign(digest, hexToBytes(privateKey), { lowS: true });
  const publicKey = secp256k1.getPublicKey(hexToBytes(privateKey), false);
  return {
    token: quote.token,
    rate: quote.rate.toString(),
    expiry: quote.expiry,
    channelId: `0x${quote.channelId.toString(16)}`,
    signer: addressOf(publicKey),
    signature: `${toHex(sig.toCompactRawBytes())}${(27 + sig.recovery).toString(16)}`,
  };
}

const DECIMAL = /^(0|[1-9][0-9]{0,77})$/;
const HEX_ID = /^0x[0-9a-fA-F]{1,64}$/;
const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;

/** Reads a wire quote's fields; undefined when any is malformed. */
export function parseQuote(value: unknown): Quote | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const q = value as Record<string, unknown>;
  if (typeof q.token !== "string" || !isAddress(q.token, { strict: false })) return undefined;
  if (typeof q.rate !== "string" || !DECIMAL.test(q.rate)) return undefined;
  if (typeof q.expiry !== "number" || !Number.isSafeInteger(q.expiry) || q.expiry < 0) return undefined;
  if (typeof q.channelId !== "string" || !HEX_ID.test(q.channelId)) return undefined;
  if (typeof q.signature !== "string" || !SIGNATURE.test(q.signature)) return undefined;
  const rate = BigInt(q.rate);
  if (rate === 0n || rate >= 1n << 256n) return undefined;
  return { token: getAddress(q.token), rate, expiry: q.expiry, channelId: BigInt(q.channelId) };
}

/**
 * The address that signed a wire quote, or undefined when the quote is malformed or its
 * signature recovers to no key (or is high-s).
 */
export function recoverQuoteSigner(chainId: number, contract: Address, signed: SignedQuote): Address | undefined {
  const quote = parseQuote(signed);
  if (!quote) return undefined;
  try {
    const bytes = hexToBytes(signed.signature);
    const v = bytes[64];
    const recovery = v >= 27 ? v - 27 : v;
    if (recovery !== 0 && recovery !== 1) return undefined;
    const signature = secp256k1.Signature.fromCompact(bytes.subarray(0, 64)).addRecoveryBit(recovery);
    if (signature.hasHighS()) return undefined;
    const point = signature.recoverPublicKey(hexToBytes(quoteDigest(chainId, contract, quote)));
    return addressOf(point.toRawBytes(false));
  } catch {
    return undefined;
  }
}

/** Whether `expectedSigner` signed exactly this wire quote (and it names that signer). */
export function verifyQuote(signed: SignedQuote, expectedSigner: Address, chainId: number, contract: Address): boolean {
  const recovered = recoverQuoteSigner(chainId, contract, signed);
  return (
    recovered !== undefined &&
    isAddressEqual(recovered, expectedSigner) &&
    typeof signed.signer === "string" &&
    isAddress(signed.signer, { strict: false }) &&
    isAddressEqual(signed.signer, expectedSigner)
  );
}

function addressOf(uncompressedPublicKey: Uint8Array): Address {
  return getAddress(`0x${keccak256(uncompressedPublicKey.subarray(1)).slice(-40)}`);
}
