import { secp256k1 as noble } from "@noble/curves/secp256k1";
import { keccak256Into } from "./keccak256";
import { selectSecp256k1, type NativeSecp256k1, type Secp256k1Backend } from "./secp256k1";

/**
 * secp256k1 public-key recovery backends that turn (digest, r ‖ s, recovery id) into an Ethereum
 * address, with the same accept/reject behaviour as the `ecrecover` precompile for the inputs
 * {@link verifyVoucherSignature} lets through (r, s in [1, n), recovery id 0 or 1).
 *
 * - `native`: libsecp256k1 through the `secp256k1` package's N-API binding (~20x faster).
 * - `js`: `@noble/curves`, for platforms where the prebuilt binding does not load.
 */

export { isNativeSecp256k1Available, SECP256K1_BACKEND_ENV } from "./secp256k1";
export type { Secp256k1Backend } from "./secp256k1";

/** Recovers signer addresses; obtain one from {@link createSignerRecoverer}. */
export interface SignerRecoverer {
  /** Which implementation this is. */
  readonly backend: Secp256k1Backend;
  /**
   * Recovers the address whose key signed `digest` (32 bytes) with `sig64` = r ‖ s (64 bytes,
   * big-endian) and recovery id `recid` (0 or 1), and writes its 20 bytes to
   * `out[outOffset, outOffset + 20)`. Returns false, writing nothing, when no key recovers (r is
   * not an x coordinate on the curve, or the result is the point at infinity). Does not check
   * low-s: callers decide policy before paying for recovery.
   */
  recoverAddressInto(digest: Uint8Array, sig64: Uint8Array, recid: number, out: Uint8Array, outOffset: number): boolean;
}

/** Options for {@link createSignerRecoverer}. */
export interface SignerRecovererOptions {
  /**
   * `native` or `js` forces that backend (throwing if `native` cannot load); `auto` picks native
   * when it loads, else js. Default: the {@link SECP256K1_BACKEND_ENV} variable, else `auto`.
   */
  readonly backend?: Secp256k1Backend | "auto";
}

/** Hashes a 65-byte uncompressed public key (0x04 ‖ X ‖ Y) to its address, written at `out[outOffset]`. */
function writeAddress(publicKey: Uint8Array, out: Uint8Array, outOffset: number): void {
  keccak256Into(publicKey, 1, 64, addressHash, 0);
  for (let i = 0; i < 20; i++) out[outOffset + i] = addressHash[12 + i];
}

// Scratch shared by both backends; recovery is synchronous, so no call can interleave.
const addressHash = new Uint8Array(32);
const publicKeyOut = new Uint8Array(65);

function createNative(secp: NativeSecp256k1): SignerRecoverer {
  return {
    backend: "native",
    recoverAddressInto(digest, sig64, recid, out, outOffset) {
      try {
        // Writes into the reused 65-byte buffer instead of allocating one per call.
        secp.ecdsaRecover(sig64, recid, digest, false, publicKeyOut);
      } catch {
        return false; // "could not be parsed" / "could not recover": not a valid signature
      }
      writeAddress(publicKeyOut, out, outOffset);
      return true;
    },
  };
}

function createJs(): SignerRecoverer {
  return {
    backend: "js",
    recoverAddressInto(digest, sig64, recid, out, outOffset) {
      let publicKey: Uint8Array;
      try {
        publicKey = noble.Signature.fromCompact(sig64).addRecoveryBit(recid).recoverPublicKey(digest).toRawBytes(false);
      } catch {
        return false; // r off the curve, point at infinity, or out-of-range scalars
      }
      writeAddress(publicKey, out, outOffset);
      return true;
    },
  };
}

/**
 * Creates a recoverer: native libsecp256k1 when it loads, else pure JS (announced by a process
 * warning, see secp256k1.ts); `options.backend` or the {@link SECP256K1_BACKEND_ENV} environment
 * variable can force either. Throws if `native` is forced but the binding does not load.
 */
export function createSignerRecoverer(options: SignerRecovererOptions = {}): SignerRecoverer {
  const native = selectSecp256k1(options.backend);
  return native !== null ? createNative(native) : createJs();
}
