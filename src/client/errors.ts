import type { ChannelOffer } from "../protocol/headers";

/**
 * Errors raised by the paying client. Each carries enough context for a caller to decide what to
 * do without parsing messages.
 */

/** A payment (or an automatic top-up) was refused locally, before anything was signed, because it would break a limit. */
export class PaymentLimitError extends Error {
  constructor(
    /**
     * Which limit: the per-request price cap (`maxAmountPerPayment` is x402's spend control, as
     * resolved by x402Client), the instance's total budget, a metered stream's budget, or the
     * top-up budget.
     */
    readonly limit: "maxPerRequest" | "maxAmountPerPayment" | "maxTotal" | "maxPerStream" | "maxTopUpTotal",
    /** The price asked by the server (for `maxTopUpTotal`: the top-up amount), atomic units. */
    readonly price: bigint,
    /** The configured limit, atomic units. */
    readonly allowed: bigint,
    /** Spent plus reserved so far by this client (for `maxTopUpTotal`: topped up so far), atomic units. */
    readonly spent: bigint,
    readonly url: string,
  ) {
    super(
      limit === "maxPerRequest" || limit === "maxAmountPerPayment"
        ? `payment refused: ${url} asks ${price} atomic units, above ${limit} ${allowed}`
        : limit === "maxTotal" || limit === "maxPerStream"
          ? `payment refused: ${url} asks ${price} atomic units, spent ${spent} of ${limit} ${allowed}`
          : `automatic top-up refused: adding ${price} atomic units would exceed maxTopUpTotal ${allowed} ` +
            `(topped up ${spent} so far)`,
    );
    this.name = "PaymentLimitError";
  }
}

/**
 * A payment refused locally, before anything was signed, because the channel's deposit cannot
 * cover it: the voucher would exceed the deposit. The fix is a top-up or a new channel.
 */
export class InsufficientDepositError extends Error {
  constructor(
    readonly channelId: bigint,
    /** The offer of the refused request: `termsFromOffer(offer, url)` gives the terms to top up with. */
    readonly offer: ChannelOffer,
    /** The price asked by the server, atomic units. */
    readonly price: bigint,
    /** The channel's deposit as last known (the server's view included), atomic units. */
    readonly deposit: bigint,
    /** What the deposit can still cover: deposit minus what is charged, signed or in flight, atomic units. */
    readonly available: bigint,
    readonly url: string,
  ) {
    super(
      `payment refused: ${url} asks ${price} atomic units, but channel 0x${channelId.toString(16)} has ` +
        `${available} of its ${deposit} deposit left; top the channel up, or open a new one`,
    );
    this.name = "InsufficientDepositError";
  }
}

/** The server's PAYMENT-RESPONSE carried a receipt that does not verify against the offer. */
export class ReceiptError extends Error {
  constructor(
    message: string,
    /** The response whose receipt failed (its body is unread). */
    readonly response: Response,
  ) {
    super(message);
    this.name = "ReceiptError";
  }
}

/** A client operation (open, top-up, relay call) failed. */
export class ChannelOperationError extends Error {
  constructor(
    message: string,
    /** Machine-readable code, e.g. the relay's `error` field (docs/errors.md, "Relay errors"), or "no_event". */
    readonly code: string,
    /** HTTP status of a relay answer, when the failure came from the relay. */
    readonly status?: number,
    /** What to do about it, as the relay said. */
    readonly fix?: string,
  ) {
    super(message);
    this.name = "ChannelOperationError";
  }
}
