/**
 * The parts of x402 v2's server-side types (@x402/core 2.27) the plug-in reads and returns, spelled
 * structurally: @x402/core's `x402ResourceServer` accepts the scheme and the facilitator built on
 * them, while paychan's own declarations need no @x402 package (a seller who does not use x402
 * does not install it). test/integration/x402Server.test.ts hands them to the real SDK, so the
 * compiler checks that they still fit.
 */

/** CAIP-2 network id, e.g. "eip155:8453". */
export type Network = `${string}:${string}`;

export interface ResourceInfo {
  readonly url: string;
  readonly description?: string;
  readonly mimeType?: string;
}

export interface PaymentRequirements {
  scheme: string;
  network: Network;
  asset: string;
  amount: string;
  payTo: string;
  maxTimeoutSeconds: number;
  extra: Record<string, unknown>;
}

/** A payment as x402's hooks see it (read-only); the plug-in keys its per-request state on the object. */
export interface PaymentPayload {
  readonly x402Version: number;
  readonly resource?: ResourceInfo;
  readonly accepted: Readonly<PaymentRequirements>;
  readonly payload: Readonly<Record<string, unknown>>;
}

export interface VerifyResponse {
  isValid: boolean;
  invalidReason?: string;
  invalidMessage?: string;
  payer?: string;
}

export interface SettleResponse {
  success: boolean;
  errorReason?: string;
  errorMessage?: string;
  payer?: string;
  transaction: string;
  network: Network;
  amount?: string;
  extra?: Record<string, unknown>;
}

export interface SupportedKind {
  x402Version: number;
  scheme: string;
  network: Network;
  extra?: Record<string, unknown>;
}

export interface SupportedResponse {
  kinds: SupportedKind[];
  extensions: string[];
  signers: Record<string, string[]>;
}

export interface AssetAmount {
  asset: string;
  amount: string;
  extra?: Record<string, unknown>;
}

/** "$0.001", "0.001", 0.001, or an amount in atomic units of an asset. */
export type Price = string | number | AssetAmount;

/** What the plug-in's hooks read of x402's verify, settle and cancel contexts. */
export interface HookContext {
  readonly paymentPayload: PaymentPayload;
  readonly requirements: Readonly<PaymentRequirements>;
  /** For HTTP: `{ request: { method, adapter } }`. */
  readonly transportContext?: unknown;
}

/** What `enrichPaymentRequiredResponse` reads of x402's context. */
export interface PaymentRequiredContext {
  readonly requirements: PaymentRequirements[];
  readonly paymentPayload?: PaymentPayload;
}

export type AbortHook = { abort: true; reason: string; message?: string };

/** The scheme hooks the plug-in sets (x402's `SchemeServerHooks`). */
export interface ChannelSchemeHooks {
  onBeforeVerify(context: HookContext): Promise<AbortHook | { skip: true; result: VerifyResponse }>;
  onBeforeSettle(context: HookContext): Promise<AbortHook | { skip: true; result: SettleResponse }>;
  onVerifiedPaymentCanceled(context: HookContext): Promise<void>;
}
