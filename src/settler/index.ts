/**
 * `paychan/settler`: claims the vouchers a paychan server accepted, many channels per
 * `claimBatch` transaction, on a schedule and at once when a payer starts to withdraw.
 *
 * {@link startSettler} runs it inside the seller's own process (next to the `paywall`
 * middleware); `paychan settle` runs the same thing as a command, and `paychan server` runs it
 * beside the reverse proxy. {@link Settler} is the engine underneath, for custom wiring.
 */
export { reportJson, startSettler } from "./main";
export type { RunningSettler, StartSettlerOptions } from "./main";
export { loadSettleConfig, parseSettleConfig, SETTLER_DEFAULTS, SETTLER_KEY_ENV } from "../shared/config";
export type { SettleConfig, SettlerPolicy, SettlerSettings } from "../shared/config";
export { GAS_PRICE_ORACLE, Settler } from "./settler";
export type { BatchReport, SettlerMetrics, SettlerOptions } from "./settler";
export { selectClaims, toBatches } from "./policy";
export type { ClaimCandidate, ClaimSelection } from "./policy";
