import { encodeAbiParameters, isAddress, keccak256, toBytes, type Address } from "viem";
import { keccak256Into } from "./keccak256";
import { createSignerRecoverer, type SignerRecoverer } from "./recoverSigner";
import { CHANNEL_NONCE_BITS, DOMAIN_NAME, DOMAIN_VERSION, MAX_AMOUNT, VOUCHER_TYPE_STRING } from "./voucher";

export {
  createSignerRecoverer,
  isNativeSecp256k1Available,
  SECP256K1_BACKEND_ENV,
  type Secp256k1Backend,
  type SignerRecoverer,
  type SignerRecovererOptions,
} from "./recoverSigner";

/**
 * Per-request voucher verification, built for a sub-millisecond budget: the EIP-712 digest of
 * `Voucher(uint256 channelId,uint96 cumulativeAmount)` with exactly two single-block keccaks into
 * reused buffers, strict signature parsing straight from bytes or hex, public-key recovery, and the
 * signer check against the address encoded in the channel id. It accepts exactly what
 * `PaymentChannels.claimBatch` accepts for EOA signers (low-s only, recovery id 0/1), so a voucher
 * the server takes is one it can claim. EIP-1271 (contract-wallet) signers are out of scope here.
 *
 * `src/protocol/voucher.ts` stays the reference definition; tests check this module against it.
 */

const MAX_UINT256 = (1n << 256n) - 1n;
/** Channel ids are the signer (160 bits) above a 24-bit nonce; anything wider names no channel. */
const CHANNEL_ID_LIMIT = 1n << (160n + CHANNEL_NONCE_BITS);

const DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

/** keccak256 of {@link VOUCHER_TYPE_STRING}; also hard-coded in the contract as VOUCHER_TYPEHASH. */
export const VOUCHER_TYPEHASH: Uint8Array = toBytes(keccak256(toBytes(VOUCHER_TYPE_STRING)));

/** EIP-712 domain separator of the PaymentChannels contract at `contract` on `chainId`. */
export function voucherDomainSeparator(chainId: number, contract: Address): Uint8Array {
  return toBytes(
    keccak256(
      encodeAbiParameters(
        [{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }, { type: "uint256" }, { type: "address" }],
        [
          keccak256(toBytes(DOMAIN_TYPE_STRING)),
          keccak256(toBytes(DOMAIN_NAME)),
          keccak256(toBytes(DOMAIN_VERSION)),
          BigInt(chainId),
          contract,
        ],
      ),
    ),
  );
}

/** Computes voucher digests for one (chain, contract) domain; see {@link createVoucherHasher}. */
export interface VoucherHasher {
  readonly chainId: number;
  readonly contract: Address;
  /** The domain separator, computed once (a copy; mutating it changes nothing). */
  readonly domainSeparator: Uint8Array;
  /**
   * The EIP-712 digest of (channelId, amount) as a new 32-byte array. Throws RangeError unless
   * 0 <= channelId < 2^256 and 0 <= amount < 2^96.
   */
  digest(channelId: bigint, amount: bigint): Uint8Array;
  /** Like {@link VoucherHasher.digest} but writes into `out[outOffset, outOffset + 32)`; allocation-free. */
  digestInto(channelId: bigint, amount: bigint, out: Uint8Array, outOffset?: number): void;
}

class FixedLayoutVoucherHasher implements VoucherHasher {
  readonly chainId: number;
  readonly contract: Address;
  // typehash ‖ channelId ‖ amount: the contract's abi.encode layout, three 32-byte words.
  private readonly struct = new Uint8Array(96);
  private readonly structView = new DataView(this.struct.buffer);
  // 0x19 0x01 ‖ domainSeparator ‖ structHash; the struct hash is written at offset 34 in place.
  private readonly envelope = new Uint8Array(66);

  constructor(chainId: number, contract: Address) {
    this.chainId = chainId;
    this.contract = contract;
    this.struct.set(VOUCHER_TYPEHASH, 0);
    this.envelope[0] = 0x19;
    this.envelope[1] = 0x01;
    this.envelope.set(voucherDomainSeparator(chainId, contract), 2);
  }

  get domainSeparator(): Uint8Array {
    return this.envelope.slice(2, 34);
  }

  digest(channelId: bigint, amount: bigint): Uint8Array {
    const out = new Uint8Array(32);
    this.digestInto(channelId, amount, out, 0);
    return out;
  }

  digestInto(channelId: bigint, amount: bigint, out: Uint8Array, outOffset = 0): void {
    if (!(channelId >= 0n && channelId <= MAX_UINT256)) throw new RangeError("channelId must be a uint256");
    if (!(amount >= 0n && amount <= MAX_AMOUNT)) throw new RangeError("amount must be a uint96");
    // setBigUint64 takes the value modulo 2^64, so each 64-bit limb needs one shift and no masking,
    // and no hex string or byte array is built for the conversion.
    const view = this.structView;
    view.setBigUint64(32, channelId >> 192n);
    view.setBigUint64(40, channelId >> 128n);
    view.setBigUint64(48, channelId >> 64n);
    view.setBigUint64(56, channelId);
    // Bytes 64..84 stay zero: the amount is 96 bits, the low 12 bytes of its word.
    view.setUint32(84, Number(amount >> 64n));
    view.setBigUint64(88, amount);
    keccak256Into(this.struct, 0, 96, this.envelope, 34);
    keccak256Into(this.envelope, 0, 66, out, outOffset);
  }
}

/**
 * Creates a {@link VoucherHasher} for the contract at `contract` on `chainId`; the domain separator
 * and type hash are computed here once, leaving two keccaks per digest.
 */
export function createVoucherHasher(chainId: number, contract: Address): VoucherHasher {
  if (!Number.isSafeInteger(chainId) || chainId <= 0) throw new RangeError(`invalid chain id ${chainId}`);
  if (!isAddress(contract, { strict: false })) throw new TypeError(`invalid contract address ${contract}`);
  return new FixedLayoutVoucherHasher(chainId, contract);
}

// ------------------------------------------------------------------ signature parsing

/** Why a voucher was rejected. */
export type VoucherRejection =
  /** Well-formed, but recovers no key or a key other than the channel's signer. */
  | "bad_signature"
  /** s > n/2: the malleable twin of a low-s signature; the contract never accepts these. */
  | "high_s"
  /** Wrong length, invalid hex, v not in {27, 28, 0, 1}, r or s zero or >= n. */
  | "malformed_signature"
  /** Channel id not below 2^184 (names no channel) or amount not a uint96. */
  | "malformed_voucher";

/** Outcome of {@link verifyVoucherSignature}; `signer` is the lowercase hex address. */
export type VoucherVerification =
  { readonly ok: true; readonly signer: Address } | { readonly ok: false; readonly reason: VoucherRejection };

/** A signature in the contract's EIP-2098 form, from {@link parseVoucherSignature}. */
export type ParsedVoucherSignature =
  | {
      readonly ok: true;
      /** r ‖ (yParity << 255 | s): what claimBatch takes. */
      readonly compact: Uint8Array;
      readonly r: Uint8Array;
      readonly s: Uint8Array;
      readonly yParity: 0 | 1;
    }
  | { readonly ok: false; readonly reason: "high_s" | "malformed_signature" };

// n and n/2 of secp256k1, big-endian; comparisons run on bytes so parsing needs no BigInt.
const CURVE_ORDER = hexBytes("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
const HALF_CURVE_ORDER = hexBytes("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

// Nibble value per UTF-16 code unit, -1 if not a hex digit. 64 KiB covers every code unit, so the
// lookup needs no range branch; OR-ing values accumulates any -1 into the sign bit.
const HEX_VALUE = new Int8Array(65536).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
for (let i = 0; i < 6; i++) HEX_VALUE[65 + i] = HEX_VALUE[97 + i] = 10 + i;

const PARSE_OK = 0;
const PARSE_MALFORMED = 1;
const PARSE_HIGH_S = 2;

// Parser output: r ‖ s (s with the EIP-2098 parity bit cleared) and the recovery id.
const sig64 = new Uint8Array(64);
let parsedRecid = 0;

/** Big-endian compare of sig64[offset, offset + 32) with `bound`: -1, 0 or 1. */
function compareWord(offset: number, bound: Uint8Array): number {
  for (let i = 0; i < 32; i++) {
    const a = sig64[offset + i];
    const b = bound[i];
    if (a !== b) return a < b ? -1 : 1;
  }
  return 0;
}

function isZeroWord(offset: number): boolean {
  let acc = 0;
  for (let i = 0; i < 32; i++) acc |= sig64[offset + i];
  return acc === 0;
}

/**
 * Parses a 65-byte (r ‖ s ‖ v) or 64-byte EIP-2098 (r ‖ yParity·s) signature, as bytes or 0x-hex,
 * into {@link sig64} / {@link parsedRecid}, and applies the contract's acceptance rules.
 */
function parseInto(signature: Uint8Array | string): number {
  let length: number;
  let v = 0;
  if (typeof signature === "string") {
    const chars = signature.length;
    if ((chars !== 132 && chars !== 130) || signature.charCodeAt(0) !== 48 || signature.charCodeAt(1) !== 120) {
      return PARSE_MALFORMED;
    }
    length = (chars - 2) >>> 1;
    let bad = 0;
    for (let i = 0, c = 2; i < 64; i++, c += 2) {
      const hi = HEX_VALUE[signature.charCodeAt(c)];
      const lo = HEX_VALUE[signature.charCodeAt(c + 1)];
      bad |= hi | lo;
      sig64[i] = (hi << 4) | lo;
    }
    if (length === 65) {
      const hi = HEX_VALUE[signature.charCodeAt(130)];
      const lo = HEX_VALUE[signature.charCodeAt(131)];
      bad |= hi | lo;
      v = (hi << 4) | lo;
    }
    if (bad < 0) return PARSE_MALFORMED;
  } else if (signature instanceof Uint8Array) {
    length = signature.length;
    if (length !== 65 && length !== 64) return PARSE_MALFORMED;
    for (let i = 0; i < 64; i++) sig64[i] = signature[i];
    if (length === 65) v = signature[64];
  } else {
    return PARSE_MALFORMED; // untyped callers: null, numbers, arrays...
  }
  if (length === 65) {
    // The contract's 65-byte path takes only 27/28; 0/1 (raw yParity, common in libraries) is
    // accepted here and means the same key, and claims are submitted in the compact form anyway.
    if (v === 27 || v === 28) parsedRecid = v - 27;
    else if (v === 0 || v === 1) parsedRecid = v;
    else return PARSE_MALFORMED;
  } else {
    parsedRecid = sig64[32] >>> 7;
    sig64[32] &= 0x7f;
  }
  if (isZeroWord(0) || compareWord(0, CURVE_ORDER) >= 0) return PARSE_MALFORMED;
  if (isZeroWord(32) || compareWord(32, CURVE_ORDER) >= 0) return PARSE_MALFORMED;
  if (compareWord(32, HALF_CURVE_ORDER) > 0) return PARSE_HIGH_S;
  return PARSE_OK;
}

type Rejected = Extract<VoucherVerification, { ok: false }>;
// Rejections are shared frozen objects: refusing a request allocates nothing.
const REJECT_MALFORMED_SIGNATURE: Rejected = Object.freeze({ ok: false, reason: "malformed_signature" });
const REJECT_HIGH_S: Rejected = Object.freeze({ ok: false, reason: "high_s" });
const REJECT_BAD_SIGNATURE: Rejected = Object.freeze({ ok: false, reason: "bad_signature" });
const REJECT_MALFORMED_VOUCHER: Rejected = Object.freeze({ ok: false, reason: "malformed_voucher" });

/**
 * Parses and policy-checks a signature without recovering it, returning fresh copies of its
 * parts; meant for storing the latest voucher in the form claimBatch takes, not for the hot path.
 */
export function parseVoucherSignature(signature: Uint8Array | string): ParsedVoucherSignature {
  const status = parseInto(signature);
  if (status === PARSE_MALFORMED) return { ok: false, reason: "malformed_signature" };
  if (status === PARSE_HIGH_S) return { ok: false, reason: "high_s" };
  const compact = sig64.slice();
  compact[32] |= parsedRecid << 7;
  return { ok: true, compact, r: sig64.slice(0, 32), s: sig64.slice(32, 64), yParity: parsedRecid as 0 | 1 };
}

// ------------------------------------------------------------------ verification

const digestScratch = new Uint8Array(32);
const recoveredScratch = new Uint8Array(20);
// Channel id as 24 big-endian bytes (it is < 2^184): the signer is bytes 1..21, the nonce 21..24.
const channelIdBytes = new Uint8Array(24);
const channelIdView = new DataView(channelIdBytes.buffer);

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * Verifies that `signature` is the channel signer's EOA signature of voucher (channelId, amount)
 * under `hasher`'s domain, by the contract's rules: low-s only, recovery id 0/1 (v 27/28 or 0/1, or
 * the EIP-2098 compact form), recovered address == channelId >> 24. Never throws on bad input; the
 * only allocations on success are the result object and its address string.
 */
export function verifyVoucherSignature(
  hasher: VoucherHasher,
  recoverer: SignerRecoverer,
  channelId: bigint,
  amount: bigint,
  signature: Uint8Array | string,
): VoucherVerification {
  const rejection = check(hasher, recoverer, channelId, amount, signature);
  if (rejection !== null) return rejection;
  let signer = "0x";
  for (let i = 0; i < 20; i++) signer += HEX_BYTE[recoveredScratch[i]];
  return { ok: true, signer: signer as Address };
}

/** The verification itself: null when valid (the signer is then in recoveredScratch). */
function check(
  hasher: VoucherHasher,
  recoverer: SignerRecoverer,
  channelId: bigint,
  amount: bigint,
  signature: Uint8Array | string,
): Rejected | null {
  if (typeof channelId !== "bigint" || typeof amount !== "bigint") return REJECT_MALFORMED_VOUCHER;
  if (channelId < 0n || channelId >= CHANNEL_ID_LIMIT || amount < 0n || amount > MAX_AMOUNT) {
    return REJECT_MALFORMED_VOUCHER;
  }
  // Parse first: rejecting junk costs no hashing.
  const status = parseInto(signature);
  if (status !== PARSE_OK) return status === PARSE_HIGH_S ? REJECT_HIGH_S : REJECT_MALFORMED_SIGNATURE;
  hasher.digestInto(channelId, amount, digestScratch, 0);
  if (!recoverer.recoverAddressInto(digestScratch, sig64, parsedRecid, recoveredScratch, 0)) {
    return REJECT_BAD_SIGNATURE;
  }
  channelIdView.setBigUint64(0, channelId >> 128n);
  channelIdView.setBigUint64(8, channelId >> 64n);
  channelIdView.setBigUint64(16, channelId);
  let diff = 0;
  for (let i = 0; i < 20; i++) diff |= recoveredScratch[i] ^ channelIdBytes[1 + i];
  return diff === 0 ? null : REJECT_BAD_SIGNATURE;
}

/**
 * Verdict vocabulary of the server's verification engine (`SignatureCheck` in
 * src/server/engine.ts), restated here so the protocol layer does not import the server layer.
 */
export type SignatureVerdict = "ok" | "invalid_signature" | "high_s_signature" | "malformed_signature";

const VERDICT_OF: Readonly<Record<VoucherRejection, SignatureVerdict>> = {
  bad_signature: "invalid_signature",
  high_s: "high_s_signature",
  malformed_signature: "malformed_signature",
  malformed_voucher: "malformed_signature",
};

/**
 * A `(channelId, amount, signature) => verdict` function over {@link verifyVoucherSignature}, the
 * shape `EngineOptions.verifySignature` of src/server/engine.ts takes. With no recoverer given, it
 * uses {@link createSignerRecoverer}'s default (native when it loads).
 */
export function createVoucherSignatureVerifier(
  hasher: VoucherHasher,
  recoverer: SignerRecoverer = createSignerRecoverer(),
): (channelId: bigint, amount: bigint, signature: Uint8Array | string) => SignatureVerdict {
  // Calls the core check directly: the engine needs no signer string, so none is built.
  return (channelId, amount, signature) => {
    const rejection = check(hasher, recoverer, channelId, amount, signature);
    return rejection === null ? "ok" : VERDICT_OF[rejection.reason];
  };
}
