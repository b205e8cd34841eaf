import { createRequire } from "node:module";
import { keccak256Into } from "./keccak256";

/**
 * secp256k1 public-key recovery backends that turn (digest, r ‖ s, recovery id) into an Ethereum
 * address, with the same accept/reject behaviour as the `ecrecover` precompile for the inputs
 * {@link verifyVoucherSignature} lets through (r, s in [1, n), recovery id 0 or 1).
 *
 * - `native`: libsecp256k1 through the `secp256k1` package's N-API binding (~20x faster).
 * - `js`: `@noble/curves`, for platforms where the prebuilt binding does not load.
 */

/** Name of a recovery backend. */
export type Secp256k1Backend = "native" | "js";

/** Environment variable that forces a backend (`native` or `js`) when no option does. */
export const SECP256K1_BACKEND_ENV = "PAYCHAN_SECP256K1";

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

/** The subset of the `secp256k1` package API used here. */
interface NativeSecp256k1 {
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean, output: Uint8Array): Uint8Array;
}

/** The subset of `@noble/curves` secp256k1 (v1.x) used here. */
interface NobleSecp256k1 {
  Signature: {
    fromCompact(bytes: Uint8Array): {
      addRecoveryBit(bit: number): {
        recoverPublicKey(msgHash: Uint8Array): { toRawBytes(isCompressed?: boolean): Uint8Array };
      };
    };
  };
}

let nativeModule: NativeSecp256k1 | null | undefined;
let nativeLoadError: unknown;

/**
 * Loads the libsecp256k1 binding, or null. `require("secp256k1")` would silently fall back to the
 * slow `elliptic` implementation when the binding is missing, so this loads `secp256k1/bindings`,
 * which throws instead; then the noble backend (faster than elliptic) takes over.
 */
function loadNative(): NativeSecp256k1 | null {
  if (nativeModule === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      nativeModule = require("secp256k1/bindings") as NativeSecp256k1;
    } catch (error) {
      nativeLoadError = error;
      nativeModule = null;
    }
  }
  return nativeModule;
}

let nobleModule: NobleSecp256k1 | undefined;

/**
 * Loads `@noble/curves` secp256k1. It is not a direct dependency but comes with viem; the copy
 * hoisted to the top of node_modules belongs to dev dependencies (ethers) and is absent from a
 * production install, so it is resolved from viem's own location, which always finds the copy viem
 * itself runs on.
 */
function loadNoble(): NobleSecp256k1 {
  if (nobleModule === undefined) {
    const fromViem = createRequire(require.resolve("viem/package.json"));
    nobleModule = (fromViem("@noble/curves/secp256k1") as { secp256k1: NobleSecp256k1 }).secp256k1;
  }
  return nobleModule;
}

/** Whether the libsecp256k1 native binding loads on this platform. */
export function isNativeSecp256k1Available(): boolean {
  return loadNative() !== null;
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

function createJs(noble: NobleSecp256k1): SignerRecoverer {
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

function backendFromEnv(): Secp256k1Backend | "auto" {
  const value = process.env[SECP256K1_BACKEND_ENV];
  if (value === undefined || value === "" || value === "auto") return "auto";
  if (value === "native" || value === "js") return value;
  // A typo here would silently change performance characteristics; fail loudly instead.
  throw new Error(`${SECP256K1_BACKEND_ENV} must be "native", "js" or "auto", got ${JSON.stringify(value)}`);
}

/**
 * Creates a recoverer: native libsecp256k1 when it loads, else pure JS; `options.backend` or the
 * {@link SECP256K1_BACKEND_ENV} environment variable can force either. Throws if `native` is
 * forced but the binding does not load.
 */
export function createSignerRecoverer(options: SignerRecovererOptions = {}): SignerRecoverer {
  const wanted = options.backend ?? backendFromEnv();
  if (wanted === "js") return createJs(loadNoble());
  const native = loadNative();
  if (native !== null) return createNative(native);
  if (wanted === "native") {
    throw new Error(`native secp256k1 backend unavailable: ${String(nativeLoadError)}`, { cause: nativeLoadError });
  }
  return createJs(loadNoble());
}
