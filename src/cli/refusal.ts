import { findNetwork } from "../chain/networks";
import { formatDollars } from "../protocol/price";
import type { ChannelOffer, ChannelView } from "../protocol/headers";
import type { ReasonCode } from "../protocol/reasons";

/**
 * What `paychan pay` tells a human when a payment is refused: the reason code, what it means and
 * the command that gets past it (docs/errors.md has the full table for library users).
 */

/** What is known about the refused payment, to name the next command precisely. */
export interface RefusalContext {
  /** The requested URL. */
  readonly url: string;
  /** The offer the payment was made under, when known. */
  readonly offer?: ChannelOffer;
  /** The channel that paid, when known. */
  readonly channelId?: bigint;
  /** The server's view of the channel, when the refusal carried one. */
  readonly view?: ChannelView;
  /** The state directory given with --state, repeated in the suggested commands. */
  readonly stateFlag?: string;
  /** The price of the request, atomic units. */
  readonly price?: bigint;
  /** What the deposit can still cover, atomic units. */
  readonly available?: bigint;
}

/** A refusal explained: one line of meaning and one of fix. */
export interface RefusalAdvice {
  readonly meaning: string;
  readonly fix: string;
}

function channelText(ctx: RefusalContext): string {
  return ctx.channelId === undefined ? "<channel id>" : `0x${ctx.channelId.toString(16)}`;
}

function networkFlag(ctx: RefusalContext): string {
  const network = ctx.offer ? findNetwork(ctx.offer.network) : undefined;
  return network ? ` --network ${network.name}` : "";
}

/** `paychan open <url> --deposit <amount>`, with the server's minimum deposit as the amount. */
function openCommand(ctx: RefusalContext): string {
  const decimals = ctx.offer?.extra.decimals ?? 6;
  const minimum = ctx.offer ? BigInt(ctx.offer.extra.minDeposit) : 0n;
  const needed = ctx.price !== undefined && ctx.price > minimum ? ctx.price : minimum;
  const deposit = needed > 0n ? `'${formatDollars(needed, decimals)}'` : "<amount>";
  return `paychan open ${ctx.url} --deposit ${deposit}${ctx.stateFlag ?? ""}`;
}

/** `paychan topup ...` for what the request lacks (at least the relay's minimum top-up). */
function topUpCommand(ctx: RefusalContext): string {
  const decimals = ctx.offer?.extra.decimals ?? 6;
  const available = ctx.available ?? (ctx.view ? BigInt(ctx.view.remaining) : undefined);
  const minimum = ctx.offer ? BigInt(ctx.offer.extra.minDeposit) : 0n;
  let amount = "<tokens>";
  if (ctx.price !== undefined && available !== undefined) {
    const lacking = ctx.price > available ? ctx.price - available : 0n;
    amount = `'${formatDollars(lacking > minimum ? lacking : minimum, decimals)}'`;
  }
  const relay = ctx.offer?.extra.relay ? ` --url ${ctx.url}` : "";
  return `paychan topup --channel ${channelText(ctx)} --amount ${amount}${relay}${networkFlag(ctx)}${ctx.stateFlag ?? ""}`;
}

const PROTOCOL_MISMATCH = (): RefusalAdvice => ({
  meaning: "the server could not read the payment header this client sent",
  fix: "update paychan; if it persists, report it to the server's operator with the body printed on stdout",
});

const NEW_TERMS = (what: string) => (ctx: RefusalContext) => ({
  meaning: `the payment names ${what} than the server's offer`,
  fix: `open a channel under the server's current terms: ${openCommand(ctx)}`,
});

const RESYNC_FAILED = (): RefusalAdvice => ({
  meaning: "this client's record of the channel disagreed with the server's, even after resynchronizing once",
  fix: "run the command again; if it repeats, another process is paying from the same channel and state",
});

// Codes of the `exact` scheme, which this client never pays with.
const EXACT_ONLY = (): RefusalAdvice => ({
  meaning: "the server answered with a code of its `exact` scheme, which this client does not use",
  fix: "report it to the server's operator with the body printed on stdout",
});

/** The advice for each reason code. */
const ADVICE: Readonly<Record<ReasonCode, (ctx: RefusalContext) => RefusalAdvice>> = {
  malformed_header: PROTOCOL_MISMATCH,
  header_too_large: PROTOCOL_MISMATCH,
  unsupported_version: PROTOCOL_MISMATCH,
  invalid_payload: PROTOCOL_MISMATCH,
  malformed_signature: PROTOCOL_MISMATCH,
  payment_required: () => ({
    meaning: "the server asks for a payment and none was accepted (its terms changed while paying)",
    fix: "run the command again",
  }),
  unsupported_scheme: NEW_TERMS("another payment scheme"),
  wrong_network: NEW_TERMS("another network"),
  wrong_contract: NEW_TERMS("another PaymentChannels contract"),
  wrong_token: NEW_TERMS("another token"),
  wrong_payee: (ctx) => ({
    meaning: `channel ${channelText(ctx)} pays another payee than this server`,
    fix: `open a channel to this server: ${openCommand(ctx)}`,
  }),
  unknown_channel: (ctx) => ({
    meaning: `the server has no record of channel ${channelText(ctx)} (not opened, not confirmed yet, or on another chain or contract)`,
    fix: `wait for the opening transaction to confirm and run the command again, or open one: ${openCommand(ctx)}`,
  }),
  channel_closed: (ctx) => ({
    meaning: `channel ${channelText(ctx)} is closed`,
    fix: `open a new channel: ${openCommand(ctx)}`,
  }),
  channel_withdrawing: (ctx) => ({
    meaning: `a withdrawal of channel ${channelText(ctx)} is pending and ends too soon for the server to claim new vouchers`,
    fix:
      `cancel it: paychan withdraw --cancel --channel ${channelText(ctx)}${networkFlag(ctx)}${ctx.stateFlag ?? ""}` +
      ` (then pay again), or open a new channel: ${openCommand(ctx)}`,
  }),
  withdraw_delay_too_short: (ctx) => ({
    meaning: `channel ${channelText(ctx)} has a shorter withdraw delay than the server accepts`,
    fix: `open a new channel: ${openCommand(ctx)} (it uses the server's minimum delay)`,
  }),
  invalid_signature: (ctx) => ({
    meaning: `the voucher is not signed by channel ${channelText(ctx)}'s signer`,
    fix: "pay with the state directory whose session key opened the channel (--state), or open a new channel",
  }),
  high_s_signature: (ctx) => ({
    meaning: `the voucher for channel ${channelText(ctx)} carries a malleable (high-s) signature`,
    fix: "update paychan; a standard signer never produces one",
  }),
  amount_exceeds_deposit: (ctx) => ({
    meaning:
      `channel ${channelText(ctx)}'s deposit` +
      `${ctx.view ? ` (${ctx.view.deposit}, ${ctx.view.remaining} left)` : ""} does not cover this request`,
    fix: `top it up: ${topUpCommand(ctx)}; or open a new channel: ${openCommand(ctx)}`,
  }),
  insufficient_amount: RESYNC_FAILED,
  voucher_reused: RESYNC_FAILED,
  invalid_quote: (ctx) => ({
    meaning: `the server did not accept the exchange-rate quote sent with the voucher for channel ${channelText(ctx)}`,
    fix: "run the command again: it pays under the quote of the server's current offer",
  }),
  quote_expired: () => ({
    meaning: "the exchange-rate quote expired again while paying under a fresh one",
    fix: "run the command again",
  }),
  unknown_stream: () => ({
    meaning: "the metered stream this voucher was for has ended or is not served by this server; nothing was charged",
    fix: "run the command again to start a new stream",
  }),
  store_unavailable: () => ({
    meaning: "the server could not store the voucher; nothing was charged",
    fix: "run the command again in a moment",
  }),
  authorization_not_yet_valid: EXACT_ONLY,
  authorization_expired: EXACT_ONLY,
  authorization_reused: EXACT_ONLY,
  transfer_failed: EXACT_ONLY,
  settlement_unavailable: EXACT_ONLY,
  rate_unavailable: (ctx) => ({
    meaning: `the server cannot price channel ${channelText(ctx)}'s token right now (its exchange-rate feed is stale); nothing was charged`,
    fix: `run the command again later, or open a channel in a token the server still offers: ${openCommand(ctx)}`,
  }),
};

/** The meaning and the next step for a refusal with `reason`. */
export function adviseRefusal(reason: ReasonCode, ctx: RefusalContext): RefusalAdvice {
  return ADVICE[reason](ctx);
}
