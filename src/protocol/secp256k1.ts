/**
 * The one place that loads libsecp256k1 (the optional `secp256k1` package's N-API binding) and
 * decides between it and the pure-JS implementation, for both voucher signer recovery
 * (recoverSigner.ts) and receipt signing (receipt.ts).
 *
 * The native binding is about 20 times faster. When it does not load (the optional dependency was
 * not installed, or its prebuilt binary does not fit the platform), paychan still works, but the
 * choice is never silent: the fallback emits a process warning with code
 * {@link SECP256K1_FALLBACK_WARNING} once, the objects built on it report their `backend`, and
 * `PAYCHAN_SECP256K1=native` turns the fallback into an error.
 */

/** Name of a secp256k1 implementation. */
export type Secp256k1Backend = "native" | "js";

/** Environment variable that forces a backend (`native`, `js` or `auto`) when no option does. */
export const SECP256K1_BACKEND_ENV = "PAYCHAN_SECP256K1";

/** Code of the process warning emitted when `auto` falls back to the pure-JS implementation. */
export const SECP256K1_FALLBACK_WARNING = "PAYCHAN_SECP256K1_FALLBACK";

/** The subset of the `secp256k1` package's binding that paychan uses. */
export interface NativeSecp256k1 {
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean, output: Uint8Array): Uint8Array;
  ecdsaSign(message: Uint8Array, privateKey: Uint8Array): { signature: Uint8Array; recid: number };
}

let nativeModule: NativeSecp256k1 | null | undefined;
let nativeLoadError: unknown;
let fallbackAnnounced = false;

/**
 * Loads the libsecp256k1 binding once, or returns null. `require("secp256k1")` would silently
 * fall back to the package's slow `elliptic` implementation when the binding is missing, so this
 * loads `secp256k1/bindings`, which throws instead.
 */
export function loadNative(): NativeSecp256k1 | null {
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

/** Whether the libsecp256k1 native binding loads on this platform. */
export function isNativeSecp256k1Available(): boolean {
  return loadNative() !== null;
}

function backendFromEnv(): Secp256k1Backend | "auto" {
  const value = process.env[SECP256K1_BACKEND_ENV];
  if (value === undefined || value === "" || value === "auto") return "auto";
  if (value === "native" || value === "js") return value;
  // A typo here would silently change performance characteristics; fail loudly instead.
  throw new Error(`${SECP256K1_BACKEND_ENV} must be "native", "js" or "auto", got ${JSON.stringify(value)}`);
}

/**
 * Resolves the backend to use: `wanted` (default: the {@link SECP256K1_BACKEND_ENV} variable,
 * else `auto`). Returns the binding for `native`, null for `js`. `auto` picks native when it
 * loads, else js with a one-time process warning; a forced `native` that does not load throws.
 */
export function selectSecp256k1(wanted: Secp256k1Backend | "auto" = backendFromEnv()): NativeSecp256k1 | null {
  if (wanted === "js") return null;
  const native = loadNative();
  if (native !== null) return native;
  if (wanted === "native") {
    throw new Error(`native secp256k1 backend unavailable: ${String(nativeLoadError)}`, { cause: nativeLoadError });
  }
  if (!fallbackAnnounced) {
    fallbackAnnounced = true;
    process.emitWarning(
      `libsecp256k1 (the optional "secp256k1" package) did not load; signatures use the pure-JS ` +
        `implementation, about 20 times slower. Set ${SECP256K1_BACKEND_ENV}=js to choose it explicitly.`,
      { code: SECP256K1_FALLBACK_WARNING, detail: String(nativeLoadError) },
    );
  }
  return null;
}
