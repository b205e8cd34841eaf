import { encodeAbiParameters, keccak256, toHex, type Address, type Hex } from "viem";

/**
 * EIP-3009 authorizations for gasless channel funding.
 *
 * `openWithAuthorization` and `topUpWithAuthorization` redeem a USDC `receiveWithAuthorization`
 * signed by the payer. The authorization's 32-byte nonce is not free: it must be the hash below of
 * the channel parameters the token signature does not cover, so whoever relays the authorization
 * can only open (or top up) exactly the channel the payer asked for. The contract exposes the same
 * computations as `openAuthorizationNonce` and `topUpAuthorizationNonce`.
 */

/** Type string hashed into the nonce of an `openWithAuthorization` authorization. */
export const OPEN_AUTHORIZATION_TYPE_STRING =
  "OpenChannel(address payee,address signer,uint32 withdrawDelay,bytes32 salt)";
/** Type string hashed into the nonce of a `topUpWithAuthorization` authorization. */
export const TOPUP_AUTHORIZATION_TYPE_STRING = "TopUpChannel(uint256 channelId,bytes32 salt)";

const OPEN_AUTHORIZATION_TYPEHASH = keccak256(toHex(OPEN_AUTHORIZATION_TYPE_STRING));
const TOPUP_AUTHORIZATION_TYPEHASH = keccak256(toHex(TOPUP_AUTHORIZATION_TYPE_STRING));

/** Parameters of a channel opened with `openWithAuthorization` that the nonce commits to. */
export interface OpenAuthorizationParams {
  /** Receives the channel's claims. */
  readonly payee: Address;
  /**
   * Voucher signer as passed to the contract. Pass the zero address exactly when the contract is
   * called with the zero address (meaning "the payer signs"): the nonce hashes the argument as given.
   */
  readonly signer: Address;
  /** Payer exit delay in seconds (uint32). */
  readonly withdrawDelay: number;
  /** Any 32 bytes chosen by the payer; a fresh random salt makes every authorization unique. */
  readonly salt: Hex;
}

/**
 * The EIP-3009 nonce the payer must sign in a `ReceiveWithAuthorization` (to: the PaymentChannels
 * contract) to authorize `openWithAuthorization(payer, payee, token, signer, withdrawDelay, amount, auth)`:
 *
 *   keccak256(abi.encode(keccak256("OpenChannel(address payee,address signer,uint32 withdrawDelay,bytes32 salt)"),
 *                        payee, signer, withdrawDelay, salt))
 *
 * Equal to the contract's `openAuthorizationNonce(payee, signer, withdrawDelay, salt)`.
 */
export function openAuthorizationNonce(params: OpenAuthorizationParams): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "bytes32" }, { type: "address" }, { type: "address" }, { type: "uint32" }, { type: "bytes32" }],
      [OPEN_AUTHORIZATION_TYPEHASH, params.payee, params.signer, params.withdrawDelay, params.salt],
    ),
  );
}

/**
 * The EIP-3009 nonce the channel's payer must sign in a `ReceiveWithAuthorization` (to: the
 * PaymentChannels contract) to authorize `topUpWithAuthorization(channelId, amount, auth)`:
 *
 *   keccak256(abi.encode(keccak256("TopUpChannel(uint256 channelId,bytes32 salt)"), channelId, salt))
 *
 * Equal to the contract's `topUpAuthorizationNonce(channelId, salt)`.
 */
export function topUpAuthorizationNonce(channelId: bigint, salt: Hex): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "bytes32" }, { type: "uint256" }, { type: "bytes32" }],
      [TOPUP_AUTHORIZATION_TYPEHASH, channelId, salt],
    ),
  );
}

/** EIP-712 types of an EIP-3009 `receiveWithAuthorization`, as defined by USDC (FiatToken v2). */
export const RECEIVE_WITH_AUTHORIZATION_TYPES = {
  ReceiveWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

/** The token's EIP-712 domain (for USDC see `usdcName` / `usdcVersion` in src/chain/networks.ts). */
export interface TokenDomain {
  readonly name: string;
  readonly version: string;
  readonly chainId: number;
  readonly verifyingContract: Address;
}

/** The message of a `ReceiveWithAuthorization`. */
export interface ReceiveWithAuthorization {
  /** The payer. */
  readonly from: Address;
  /** The PaymentChannels contract (only the recipient may redeem the authorization). */
  readonly to: Address;
  readonly value: bigint;
  /** Valid strictly after this Unix time. */
  readonly validAfter: bigint;
  /** Valid strictly before this Unix time. */
  readonly validBefore: bigint;
  /** {@link openAuthorizationNonce} or {@link topUpAuthorizationNonce}. */
  readonly nonce: Hex;
}

/** Typed data for signing a `ReceiveWithAuthorization` with a viem account or wallet client. */
export function receiveWithAuthorizationTypedData(domain: TokenDomain, message: ReceiveWithAuthorization) {
  return {
    domain,
    types: RECEIVE_WITH_AUTHORIZATION_TYPES,
    primaryType: "ReceiveWithAuthorization" as const,
    message,
  };
}
