import { BaseError, decodeErrorResult, parseAbi, type Hex } from "viem";
import { paymentChannelsAbi } from "./abi";

/**
 * Reads why a simulated call reverted, whatever node answered: the revert data sits in the
 * error's `data` (geth, anvil, most providers) or in `data.data` (Hardhat, which wraps it in an
 * "internal error" that names nothing). Decoded against the PaymentChannels errors, the ERC-20
 * errors of OpenZeppelin 5 and the EIP-3009 errors of the mock USDC; Circle's FiatToken reverts
 * with strings (`Error(string)`), which come back as `reason`.
 */

/** The token-side custom errors a PaymentChannels call can bubble up. */
const TOKEN_ERRORS = parseAbi([
  "error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)",
  "error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed)",
  "error MockUSDCAuthorizationNotYetValid(uint256 validAfter)",
  "error MockUSDCAuthorizationExpired(uint256 validBefore)",
  "error MockUSDCAuthorizationUsed(address authorizer, bytes32 nonce)",
  "error MockUSDCInvalidSigner(address signer, address expected)",
  "error MockUSDCCallerMustBePayee(address caller, address payee)",
  "error ECDSAInvalidSignature()",
  "error ECDSAInvalidSignatureLength(uint256 length)",
  "error ECDSAInvalidSignatureS(bytes32 s)",
]);

const ERRORS = [...paymentChannelsAbi.filter((item) => item.type === "error"), ...TOKEN_ERRORS];

/** A decoded revert: a custom error with its arguments, or a revert string. */
export type Revert =
  | { readonly kind: "error"; readonly name: string; readonly args: readonly unknown[] }
  | { readonly kind: "reason"; readonly reason: string }
  | { readonly kind: "unknown"; readonly data: Hex };

/** The revert data carried by an RPC error, if any. */
export function revertData(error: unknown): Hex | undefined {
  if (!(error instanceof BaseError)) return undefined;
  let found: Hex | undefined;
  error.walk((e) => {
    const data = (e as { data?: unknown }).data;
    const hex = typeof data === "object" && data !== null ? (data as { data?: unknown }).data : data;
    if (typeof hex === "string" && /^0x(?:[0-9a-fA-F]{2})*$/.test(hex) && hex.length >= 10) found = hex as Hex;
    return found !== undefined;
  });
  return found;
}

/** Why `error` reverted, or undefined when it carries no revert data (a transport failure, say). */
export function decodeRevert(error: unknown): Revert | undefined {
  const data = revertData(error);
  if (data === undefined) return undefined;
  try {
    // viem also decodes Solidity's built-in Error(string) and Panic(uint256), which no ABI lists.
    const decoded = decodeErrorResult({ abi: ERRORS, data }) as { errorName: string; args?: readonly unknown[] };
    if (decoded.errorName === "Error") return { kind: "reason", reason: String(decoded.args?.[0] ?? "") };
    return { kind: "error", name: decoded.errorName, args: decoded.args ?? [] };
  } catch {
    return { kind: "unknown", data };
  }
}
