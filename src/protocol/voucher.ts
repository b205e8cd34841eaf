import {
  concatHex,
  hashTypedData,
  numberToHex,
  parseSignature,
  serializeCompactSignature,
  signatureToCompactSignature,
  type Address,
  type Hex,
} from "viem";

/**
 * The one TypeScript definition of a paychan voucher. It must match the contract:
 *
 *   Voucher(uint256 channelId,uint96 cumulativeAmount)
 *
 * under the EIP-712 domain { name: "paychan", version: "1", chainId, verifyingContract }.
 */
export const VOUCHER_TYPE_STRING = "Voucher(uint256 channelId,uint96 cumulativeAmount)";

export const VOUCHER_TYPES = {
  Voucher: [
    { name: "channelId", type: "uint256" },
    { name: "cumulativeAmount", type: "uint96" },
  ],
} as const;

export const DOMAIN_NAME = "paychan";
export const DOMAIN_VERSION = "1";

/** Largest amount a voucher or deposit can carry (uint96). */
export const MAX_AMOUNT = (1n << 96n) - 1n;
/** Bits of a channel id taken by the per-signer nonce; the signer address sits above them. */
export const CHANNEL_NONCE_BITS = 24n;
/** Size of one claimBatch item: id (23) | amount (12) | r (32) | yParityAndS (32). */
export const CLAIM_ITEM_SIZE = 99;

export interface Voucher {
  readonly channelId: bigint;
  readonly cumulativeAmount: bigint;
}

export interface VoucherDomain {
  readonly name: typeof DOMAIN_NAME;
  readonly version: typeof DOMAIN_VERSION;
  readonly chainId: number;
  readonly verifyingContract: Address;
}

/** The EIP-712 domain of the PaymentChannels contract at `contract` on `chainId`. */
export function voucherDomain(chainId: number, contract: Address): VoucherDomain {
  return { name: DOMAIN_NAME, version: DOMAIN_VERSION, chainId, verifyingContract: contract };
}

/** Typed data for signing a voucher with a viem account or wallet client. */
export function voucherTypedData(domain: VoucherDomain, voucher: Voucher) {
  return {
    domain,
    types: VOUCHER_TYPES,
    primaryType: "Voucher" as const,
    message: { channelId: voucher.channelId, cumulativeAmount: voucher.cumulativeAmount },
  };
}

/** The EIP-712 digest of a voucher, computed the reference way (viem). */
export function voucherDigest(domain: VoucherDomain, voucher: Voucher): Hex {
  return hashTypedData(voucherTypedData(domain, voucher));
}

/** The channel id the contract assigns to the `nonce`-th channel of `signer`. */
export function channelIdFor(signer: Address, nonce: bigint): bigint {
  return (BigInt(signer) << CHANNEL_NONCE_BITS) | nonce;
}

/** The voucher signer named by a channel id. */
export function signerOfChannel(channelId: bigint): Address {
  return numberToHex(channelId >> CHANNEL_NONCE_BITS, { size: 20 });
}

/** Converts a 65-byte signature to the 64-byte EIP-2098 form the batch claim takes. */
export function toCompactSignature(signature: Hex): Hex {
  return serializeCompactSignature(signatureToCompactSignature(parseSignature(signature)));
}

/** Encodes one claimBatch item from a voucher and its 65- or 64-byte signature. */
export function encodeClaimItem(voucher: Voucher, signature: Hex): Hex {
  const compact = signature.length === 2 + 130 ? toCompactSignature(signature) : signature;
  return concatHex([
    numberToHex(voucher.channelId, { size: 23 }),
    numberToHex(voucher.cumulativeAmount, { size: 12 }),
    compact,
  ]);
}

/** Bytes per channel in a ChannelsClaimed log: channelId (23) | cumulative claimed (12). */
export const CLAIM_RECORD_SIZE = 35;

/**
 * Unpacks the `claims` of a ChannelsClaimed log (one per claimBatch): per claimed channel, in item
 * order, its id and new cumulative claimed total. Throws on a length that is not whole records.
 */
export function decodeClaimRecords(claims: Hex): { channelId: bigint; claimed: bigint }[] {
  const hex = claims.slice(2);
  const size = CLAIM_RECORD_SIZE * 2;
  if (hex.length % size !== 0) throw new Error(`ChannelsClaimed data of ${hex.length / 2} bytes is not whole records`);
  const records: { channelId: bigint; claimed: bigint }[] = [];
  for (let at = 0; at < hex.length; at += size) {
    records.push({
      channelId: BigInt(`0x${hex.slice(at, at + 46)}`),
      claimed: BigInt(`0x${hex.slice(at + 46, at + size)}`),
    });
  }
  return records;
}
