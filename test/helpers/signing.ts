import { ethers } from "hardhat";
import type { Signer, TypedDataDomain } from "ethers";
import { RECEIVE_WITH_AUTHORIZATION_TYPES } from "../../src/protocol/authorization";
import { encodeClaimItem, toCompactSignature, VOUCHER_TYPES, type VoucherDomain } from "../../src/protocol/voucher";
import type { IPaymentChannels } from "../../typechain-types";

/** A 0x-prefixed hex string. */
export type Hex = `0x${string}`;

/** Anything that can sign EIP-712 typed data: a Hardhat signer or an ethers Wallet. */
export type TypedDataSigner = Pick<Signer, "signTypedData">;

/** secp256k1 group order. */
export const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
/** Largest s a signature may carry to be accepted (n / 2). */
export const HALF_N = SECP256K1_N / 2n;

/** The EIP-712 domain of MockUSDC (the same as Circle's USDC: "USD Coin", version "2"). */
export function usdcDomain(chainId: number, token: string, name = "USD Coin", version = "2"): TypedDataDomain {
  return { name, version, chainId, verifyingContract: token };
}

/** Signs the voucher (`channelId`, `amount`) under `domain`; returns the 65-byte (r, s, v) signature. */
export async function signVoucher(
  wallet: TypedDataSigner,
  domain: VoucherDomain | TypedDataDomain,
  channelId: bigint,
  amount: bigint,
): Promise<Hex> {
  const signature = await wallet.signTypedData(
    domain as TypedDataDomain,
    { Voucher: [...VOUCHER_TYPES.Voucher] },
    { channelId, cumulativeAmount: amount },
  );
  return signature as Hex;
}

/** The 64-byte EIP-2098 form (r, yParity ‖ s) of a 65-byte signature. */
export function compactSignature(signature: string): Hex {
  return toCompactSignature(signature as Hex);
}

/** Splits a 65-byte signature into r, s (as bigint) and v. */
export function splitSignature(signature: string): { r: Hex; s: bigint; v: number } {
  const bytes = ethers.getBytes(signature);
  if (bytes.length !== 65) throw new Error(`expected a 65-byte signature, got ${bytes.length} bytes`);
  return { r: ethers.hexlify(bytes.slice(0, 32)) as Hex, s: BigInt(ethers.hexlify(bytes.slice(32, 64))), v: bytes[64] };
}

/** Joins r, s and v into a 65-byte signature. */
export function joinSignature(r: string, s: bigint, v: number): Hex {
  return ethers.concat([r, ethers.toBeHex(s, 32), ethers.toBeHex(v, 1)]) as Hex;
}

/**
 * The malleable twin (r, n - s, v ^ 1) of a 65-byte signature: ecrecover accepts it for the same
 * digest and signer, and the contract must refuse it.
 */
export function highSTwin(signature: string): Hex {
  const { r, s, v } = splitSignature(signature);
  return joinSignature(r, SECP256K1_N - s, v === 27 ? 28 : 27);
}

/** One 99-byte claimBatch item from a voucher and its 65- or 64-byte signature. */
export function claimItem(channelId: bigint, amount: bigint, signature: string): Hex {
  return encodeClaimItem({ channelId, cumulativeAmount: amount }, signature as Hex);
}

/** One 99-byte claimBatch item with r and the raw yParityAndS word given explicitly. */
export function rawClaimItem(channelId: bigint, amount: bigint, r: string, yParityAndS: bigint): Hex {
  return ethers.concat([
    ethers.toBeHex(channelId, 23),
    ethers.toBeHex(amount, 12),
    ethers.zeroPadValue(r, 32),
    ethers.toBeHex(yParityAndS, 32),
  ]) as Hex;
}

/** Concatenates claim items into a claimBatch payload. */
export function batch(...items: string[]): Hex {
  return (items.length === 0 ? "0x" : ethers.concat(items)) as Hex;
}

/** The EIP-3009 `ReceiveWithAuthorization` message fields. */
export interface ReceiveAuthorizationMessage {
  from: string;
  to: string;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: string;
}

/** Signs an EIP-3009 `receiveWithAuthorization` for MockUSDC (or any token with `tokenDomain`). */
export async function signReceiveAuthorization(
  wallet: TypedDataSigner,
  tokenDomain: TypedDataDomain,
  message: ReceiveAuthorizationMessage,
): Promise<{ v: number; r: Hex; s: Hex }> {
  const signature = await wallet.signTypedData(
    tokenDomain,
    { ReceiveWithAuthorization: RECEIVE_WITH_AUTHORIZATION_TYPES.ReceiveWithAuthorization.map((f) => ({ ...f })) },
    message,
  );
  const sig = ethers.Signature.from(signature);
  return { v: sig.v, r: sig.r as Hex, s: sig.s as Hex };
}

/** Builds the {IPaymentChannels.Authorization} struct from a signed authorization. */
export function authorizationStruct(
  signature: { v: number; r: string; s: string },
  validAfter: bigint,
  validBefore: bigint,
  salt: string,
): IPaymentChannels.AuthorizationStruct {
  return { validAfter, validBefore, salt, v: signature.v, r: signature.r, s: signature.s };
}

/** Signs an EIP-2612 permit of `value` from `owner` to `spender` on an EIP-2612 token. */
export async function signPermit(
  owner: TypedDataSigner & { getAddress(): Promise<string> },
  tokenDomain: TypedDataDomain,
  spender: string,
  value: bigint,
  nonce: bigint,
  deadline: bigint,
): Promise<{ v: number; r: Hex; s: Hex }> {
  const signature = await owner.signTypedData(
    tokenDomain,
    {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    { owner: await owner.getAddress(), spender, value, nonce, deadline },
  );
  const sig = ethers.Signature.from(signature);
  return { v: sig.v, r: sig.r as Hex, s: sig.s as Hex };
}
