import { keccak_256 } from "@noble/hashes/sha3";
import { secp256k1 } from "@noble/curves/secp256k1";
import {
  hashTypedData,
  recoverTypedDataAddress,
  keccak256,
  stringToBytes,
  toHex,
  type Address,
  type Hex,
  isAddressEqual,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { keccak256IntoAnyLength } from "./keccak256";
import { selectSecp256k1, type NativeSecp256k1, type Secp256k1Backend } from "./secp256k1";

/**
 * Receipts: every paid response carries one, signed by the server's key, so the payer (or anyone)
 * can prove offline what the server acknowledged for a request.
 *
 *   Receipt(uint256 channelId,uint96 voucherAmount,uint96 charge,uint96 chargedTotal,bytes32 request,uint64 issuedAt)
 *
 * under the EIP-712 domain { name: "paychan receipt", version: "1", chainId, verifyingContract }.
 */
export const RECEIPT_TYPE_STRING =
  "Receipt(uint256 channelId,uint96 voucherAmount,uint96 charge,uint96 chargedTotal,bytes32 request,uint64 issuedAt)";

export const RECEIPT_TYPES = {
  Receipt: [
    { name: "channelId", type: "uint256" },
    { name: "voucherAmount", type: "uint96" },
    { name: "charge", type: "uint96" },
    { name: "chargedTotal", type: "uint96" },
    { name: "request", type: "bytes32" },
    { name: "issuedAt", type: "uint64" },
  ],
} as const;

export const RECEIPT_DOMAIN_NAME = "paychan receipt";
export const RECEIPT_DOMAIN_VERSION = "1";

/** The receipt fields, before signing. */
export interface Receipt {
  readonly channelId: bigint;
  readonly voucherAmount: bigint;
  readonly charge: bigint;
  readonly chargedTotal: bigint;
  /** keccak256 of "<METHOD> <path?query>" of the paid request. */
  readonly request: Hex;
  /** Unix seconds. */
  readonly issuedAt: number;
}

/** A receipt as sent on the wire (numbers as strings). */
export interface SignedReceipt {
  readonly channelId: Hex;
  readonly voucherAmount: string;
  readonly charge: string;
  readonly chargedTotal: string;
  readonly request: Hex;
  readonly issuedAt: number;
  readonly signer: Address;
  readonly signature: Hex;
}

/** The hash that binds a receipt to one request. */
export function requestHash(method: string, pathAndQuery: string): Hex {
  const line = `${method.toUpperCase()} ${pathAndQuery}`;
  // UTF-8 takes at most 3 bytes per UTF-16 unit; longer lines get a buffer of their own.
  const buf = line.length * 3 <= requestLine.length ? requestLine : Buffer.allocUnsafe(line.length * 3);
  const length = buf.write(line, 0, "utf8");
  keccak256IntoAnyLength(buf, 0, length, requestDigest, 0);
  return `0x${requestDigest.toString("hex")}`;
}

/** Scratch for {@link requestHash} (single-threaded, so shared). */
const requestLine = Buffer.allocUnsafe(1024);
const requestDigest = Buffer.allocUnsafe(32);

function receiptDomain(chainId: number, contract: Address) {
  return { name: RECEIPT_DOMAIN_NAME, version: RECEIPT_DOMAIN_VERSION, chainId, verifyingContract: contract } as const;
}

function receiptMessage(receipt: Receipt) {
  return { ...receipt, issuedAt: BigInt(receipt.issuedAt) };
}

/** The receipt's EIP-712 digest computed the reference way (viem). */
export function receiptDigest(chainId: number, contract: Address, receipt: Receipt): Hex {
  return hashTypedData({
    domain: receiptDomain(chainId, contract),
    types: RECEIPT_TYPES,
    primaryType: "Receipt",
    message: receiptMessage(receipt),
  });
}

/** Parses a wire receipt back into fields. */
export function parseReceipt(signed: SignedReceipt): Receipt {
  return {
    channelId: BigInt(signed.channelId),
    voucherAmount: BigInt(signed.voucherAmount),
    charge: BigInt(signed.charge),
    chargedTotal: BigInt(signed.chargedTotal),
    request: signed.request,
    issuedAt: signed.issuedAt,
  };
}

/** Verifies a receipt offline: true when `expectedSigner` signed exactly these fields. */
export async function verifyReceipt(
  signed: SignedReceipt,
  expectedSigner: Address,
  chainId: number,
  contract: Address,
): Promise<boolean> {
  try {
    const recovered = await recoverTypedDataAddress({
      domain: receiptDomain(chainId, contract),
      types: RECEIPT_TYPES,
      primaryType: "Receipt",
      message: receiptMessage(parseReceipt(signed)),
      signature: signed.signature,
    });
    return isAddressEqual(recovered, expectedSigner) && isAddressEqual(signed.signer, expectedSigner);
  } catch {
    return false;
  }
}

/** Options for {@link ReceiptSigner}. */
export interface ReceiptSignerOptions {
  /**
   * `native` (libsecp256k1), `js`, or `auto`: native when it loads, else js with a process
   * warning. Default: the `PAYCHAN_SECP256K1` variable, else `auto` (see secp256k1.ts).
   */
  readonly backend?: Secp256k1Backend | "auto";
}

/**
 * Signs receipts on the request path: the domain separator and type hash are computed once, the
 * struct is hashed from a fixed 224-byte layout, and signing uses libsecp256k1 when it loads
 * (pure JS otherwise, announced by a process warning; both are deterministic RFC 6979, so they
 * give identical signatures).
 */
export class ReceiptSigner {
  readonly address: Address;
  /** Which secp256k1 implementation signs. */
  readonly backend: Secp256k1Backend;
  private readonly key: Uint8Array;
  private readonly struct = Buffer.alloc(7 * 32);
  private readonly structView = new DataView(this.struct.buffer, this.struct.byteOffset, this.struct.length);
  private readonly digestBuffer = new Uint8Array(32);
  private readonly digestInput = Buffer.alloc(66);
  private readonly native: NativeSecp256k1 | null;

  constructor(privateKey: Hex, chainId: number, contract: Address, options: ReceiptSignerOptions = {}) {
    this.native = selectSecp256k1(options.backend);
    this.backend = this.native !== null ? "native" : "js";
    this.address = privateKeyToAccount(privateKey).address;
    this.key = Buffer.from(privateKey.slice(2), "hex");
    const separator = domainSeparatorOf(chainId, contract);
    this.digestInput.write("1901", 0, "hex");
    this.digestInput.write(separator.slice(2), 2, "hex");
    this.struct.write(keccak256(stringToBytes(RECEIPT_TYPE_STRING)).slice(2), 0, "hex");
  }

  /** The EIP-712 digest of `receipt` (equal to {@link receiptDigest}). */
  digest(receipt: Receipt): Uint8Array {
    const out = new Uint8Array(32);
    this.digestInto(receipt, out);
    return out;
  }

  /** Like {@link digest}, into `out[0, 32)`: fixed layout, two keccaks (the struct is two blocks), no hex. */
  digestInto(receipt: Receipt, out: Uint8Array): void {
    const s = this.struct;
    const v = this.structView;
    setWord(v, 32, receipt.channelId);
    setWord(v, 64, receipt.voucherAmount);
    setWord(v, 96, receipt.charge);
    setWord(v, 128, receipt.chargedTotal);
    const request = receipt.request;
    if (request.length === 66) s.write(request.slice(2), 160, "hex");
    else s.write(request.slice(2).padStart(64, "0"), 160, "hex");
    const issuedAt = receipt.issuedAt;
    v.setBigUint64(192, 0n);
    v.setBigUint64(200, 0n);
    v.setBigUint64(208, 0n);
    v.setUint32(216, Math.floor(issuedAt / 2 ** 32));
    v.setUint32(220, issuedAt >>> 0);
    keccak256IntoAnyLength(s, 0, s.length, this.digestInput, 34);
    keccak256IntoAnyLength(this.digestInput, 0, 66, out, 0);
  }

  /** Signs a receipt. */
  sign(receipt: Receipt): SignedReceipt {
    const digest = this.digestBuffer;
    this.digestInto(receipt, digest);
    let signature: Hex;
    if (this.native) {
      const { signature: rs, recid } = this.native.ecdsaSign(digest, this.key);
      signature = `0x${Buffer.from(rs).toString("hex")}${(27 + recid).toString(16)}`;
    } else {
      const sig = secp256k1.sign(digest, this.key, { lowS: true });
      signature = `${toHex(sig.toCompactRawBytes())}${(27 + sig.recovery).toString(16)}`;
    }
    return {
      channelId: `0x${receipt.channelId.toString(16)}`,
      voucherAmount: receipt.voucherAmount.toString(),
      charge: receipt.charge.toString(),
      chargedTotal: receipt.chargedTotal.toString(),
      request: receipt.request,
      issuedAt: receipt.issuedAt,
      signer: this.address,
      signature,
    };
  }
}

/** keccak256 of the EIP712Domain struct for the receipt domain. */
function domainSeparatorOf(chainId: number, contract: Address): Hex {
  const typeHash = keccak256(
    stringToBytes("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
  );
  const buf = Buffer.alloc(5 * 32);
  buf.write(typeHash.slice(2), 0, "hex");
  buf.write(keccak256(stringToBytes(RECEIPT_DOMAIN_NAME)).slice(2), 32, "hex");
  buf.write(keccak256(stringToBytes(RECEIPT_DOMAIN_VERSION)).slice(2), 64, "hex");
  writeWord(buf, 96, BigInt(chainId));
  buf.write(contract.slice(2).toLowerCase().padStart(64, "0"), 128, "hex");
  return toHex(keccak_256(buf));
}

/** Writes `value` (a uint256) as a big-endian 32-byte word at `offset`, in 64-bit limbs. */
function setWord(view: DataView, offset: number, value: bigint): void {
  // setBigUint64 takes its argument modulo 2^64, so each limb is one shift.
  view.setBigUint64(offset, value >> 192n);
  view.setBigUint64(offset + 8, value >> 128n);
  view.setBigUint64(offset + 16, value >> 64n);
  view.setBigUint64(offset + 24, value);
}

/** Writes `value` as a big-endian 32-byte word at `offset`. */
function writeWord(buf: Buffer, offset: number, value: bigint): void {
  buf.write(value.toString(16).padStart(64, "0"), offset, "hex");
}
