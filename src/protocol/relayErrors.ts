/**
 * Every error code the gasless relay (`<relay>/open`, `<relay>/topup`) can answer, in one place,
 * with its HTTP status and the fix sent with it. docs/errors.md ("Relay errors") has a row for
 * each; test/protocol/reasons.test.ts keeps the two in step. These are not payment verdicts (a
 * voucher never gets one): they answer a request to open or top up a channel.
 *
 * An error body is `{ "error": code, "message": what happened, "fix": what to do, "txHash"? }`.
 */
export const RELAY_ERRORS = {
  // 400, 413: the request itself is malformed.
  invalid_json: { status: 400, fix: "Send a JSON object as the body." },
  invalid_request: {
    status: 400,
    fix: "Send the fields documented for /open or /topup (the message names the wrong one); the client library does.",
  },
  body_too_large: { status: 413, fix: "Send only the documented fields; a request is well under 8 KiB." },
  // 422: the terms, the authorization or the chain refuse it; nothing was sent.
  wrong_payee: { status: 422, fix: "Open the channel to the payee of the server's offer (payTo)." },
  wrong_token: { status: 422, fix: "Use the token of the server's offer (asset)." },
  withdraw_delay_out_of_range: {
    status: 422,
    fix: "Choose a withdraw delay between the offer's extra.minWithdrawDelay and 30 days.",
  },
  deposit_too_small: { status: 422, fix: "Deposit at least the offer's extra.minDeposit." },
  topup_too_small: { status: 422, fix: "Top up by at least the offer's extra.minDeposit." },
  deposit_too_large: { status: 422, fix: "Keep a channel's deposit below 2^96 atomic units: open another channel." },
  unknown_channel: { status: 422, fix: "Check the channel id and the network; wait for the opening to confirm." },
  channel_closed: { status: 422, fix: "Open a new channel." },
  channel_withdrawing: {
    status: 422,
    fix: "Cancel the pending withdrawal first (cancelWithdrawal, paychan withdraw --cancel), then top up.",
  },
  invalid_authorization: {
    status: 422,
    fix:
      "Sign the EIP-3009 ReceiveWithAuthorization with the payer's key, in the token's domain " +
      "(offer extra.name, extra.version), for the nonce derived from the channel parameters; the client library does.",
  },
  authorization_not_yet_valid: { status: 422, fix: "Sign with validAfter 0 (or a time already past)." },
  authorization_expiring: { status: 422, fix: "Sign with a validBefore at least two minutes ahead." },
  authorization_expired: {
    status: 422,
    fix: "Sign a new authorization with a later validBefore (retrying with the client library does).",
  },
  authorization_used: {
    status: 422,
    fix: "Sign a new authorization with a fresh salt: this one was already used or cancelled.",
  },
  insufficient_balance: {
    status: 422,
    fix: "Fund the payer wallet with the token (at least the amount asked), or deposit less.",
  },
  account_blocked: { status: 422, fix: "The token refuses this payer (blocklisted): pay from another wallet." },
  signer_exhausted: { status: 422, fix: "Use a new session key as the channel's signer." },
  would_revert: { status: 422, fix: "The message names the contract's error: correct the request accordingly." },
  // 429: too many relay requests at once.
  relay_busy: { status: 429, fix: "Retry in a moment." },
  // 500, 502, 503, 504: the server or its chain failed; the request may be retried.
  internal_error: { status: 500, fix: "Retry; if it persists, tell the server's operator." },
  chain_unavailable: { status: 502, fix: "Retry later: the server cannot reach its chain right now." },
  send_failed: { status: 502, fix: "Retry later: the transaction could not be sent, and nothing was spent." },
  reverted: { status: 502, fix: "Look the transaction (txHash) up; retry with a new authorization." },
  no_channel_event: { status: 502, fix: "Look the transaction (txHash) up on-chain and tell the server's operator." },
  token_paused: { status: 503, fix: "The token's issuer has paused it: retry later." },
  receipt_timeout: {
    status: 504,
    fix: "Watch txHash: the transaction may still confirm; do not send a new authorization until it has failed.",
  },
} as const satisfies Readonly<Record<string, { readonly status: number; readonly fix: string }>>;

/** A relay error code. */
export type RelayErrorCode = keyof typeof RELAY_ERRORS;
