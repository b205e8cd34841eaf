/**
 * Every reason code a client can receive, in one place. docs/errors.md has a row for each
 * (meaning and fix); test/protocol/reasons.test.ts keeps the two in step.
 *
 * Expected verification failures are returned as values carrying one of these codes; only
 * programming and transport faults are thrown.
 */
export const REASONS = {
  // 402: the payment is missing, malformed or not acceptable; the body carries fresh payment
  // terms. A malformed payment is a payment verdict too: x402 clients act on 402 only.
  payment_required: 402,
  malformed_header: 402,
  header_too_large: 402,
  unsupported_version: 402,
  invalid_payload: 402,
  malformed_signature: 402,
  unsupported_scheme: 402,
  wrong_network: 402,
  wrong_contract: 402,
  wrong_token: 402,
  wrong_payee: 402,
  unknown_channel: 402,
  channel_closed: 402,
  channel_withdrawing: 402,
  withdraw_delay_too_short: 402,
  invalid_signature: 402,
  high_s_signature: 402,
  amount_exceeds_deposit: 402,
  insufficient_amount: 402,
  voucher_reused: 402,
  invalid_quote: 402,
  quote_expired: 402,
  rate_unavailable: 402,
  // The `exact` fallback (one EIP-3009 transfer per request).
  authorization_not_yet_valid: 402,
  authorization_expired: 402,
  authorization_reused: 402,
  transfer_failed: 402,
  // 404: a mid-stream voucher for a metered stream that has ended or is not served here (nothing charged).
  unknown_stream: 404,
  // 503: the server cannot take payments right now; retry later (a voucher unchanged, an `exact` payment with a new authorization).
  store_unavailable: 503,
  settlement_unavailable: 503,
} as const;

export type ReasonCode = keyof typeof REASONS;
export type ReasonStatus = (typeof REASONS)[ReasonCode];

/** The HTTP status that goes with a reason code. */
export function statusOf(reason: ReasonCode): ReasonStatus {
  return REASONS[reason];
}

/** Whether `value` is a known reason code. */
export function isReasonCode(value: unknown): value is ReasonCode {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(REASONS, value);
}
