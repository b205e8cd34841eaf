import type { ChannelOffer } from "../protocol/headers";
import { ChannelOperationError, PaymentLimitError } from "./errors";
import type { FundingMethod, FundingResult } from "./openChannel";
import { termsFromOffer } from "./terms";
import { topUp } from "./topUp";

/**
 * Automatic top-up for {@link createPayingFetch}'s `autoTopUp` option: when a paid answer leaves
 * less than `below` on a channel, or a request's voucher would exceed the channel's deposit, the
 * channel is topped up by `amount` through `funding` (e.g. gaslessly through the server's relay),
 * at most one top-up per channel at a time, and within `maxTopUpTotal`.
 */

/** The `autoTopUp` option of createPayingFetch. */
export interface AutoTopUpOptions {
  /** Top up when the channel's headroom (known deposit − highest amount signed) falls below this, atomic units. */
  readonly below: bigint;
  /** Added by each top-up, atomic units (a relay refuses less than the server's minDeposit). */
  readonly amount: bigint;
  /** How the top-up is funded: `{ kind: "relay", payer }` is gasless (the payer needs the token, no ETH). */
  readonly funding: FundingMethod;
  /**
   * How long a request refused with `amount_exceeds_deposit` keeps being retried after the top-up,
   * while the server learns the new deposit (it waits for its confirmations). Default 60,000 ms.
   */
  readonly waitMs?: number;
  /** After a failed threshold top-up, the next one is tried no sooner than this. Default 30,000 ms. */
  readonly retryAfterMs?: number;
  /** Called after each top-up. */
  readonly onTopUp?: (event: TopUpEvent) => void;
  /** Called when a threshold top-up fails (the paid response is still returned). */
  readonly onError?: (error: unknown, channelId: bigint) => void;
}

/** One automatic top-up. */
export interface TopUpEvent {
  readonly channelId: bigint;
  readonly amount: bigint;
  readonly txHash: FundingResult["txHash"];
  /** The channel's deposit afterwards. */
  readonly deposit: bigint;
  /** What triggered it: the threshold, or a request whose voucher would exceed the deposit. */
  readonly reason: "below" | "amount_exceeds_deposit";
}

/** What the controller keeps per channel (owned by the paying fetch's channel slot). */
export interface TopUpTarget {
  readonly channelId: bigint;
  /** Highest deposit known (from answers, 402 views and top-up results); deposits only grow. */
  deposit: bigint | undefined;
  /** The top-up in flight, shared by everyone who needs it. */
  topUp: Promise<FundingResult> | undefined;
  /** When the last threshold-triggered top-up failed. */
  failedAt: number | undefined;
}

export const AUTO_TOP_UP_DEFAULTS = { waitMs: 60_000, retryAfterMs: 30_000 } as const;

/** The per-instance controller: budget and one-at-a-time top-ups. */
export class AutoTopUp {
  private total = 0n;

  constructor(
    readonly options: AutoTopUpOptions,
    /** Largest sum of top-ups this instance makes. */
    readonly maxTopUpTotal: bigint,
    private readonly topUpImpl: typeof topUp = topUp,
  ) {
    if (options.amount <= 0n) throw new RangeError("autoTopUp.amount must be positive");
    if (options.below < 0n) throw new RangeError("autoTopUp.below must not be negative");
  }

  /** Sum of top-ups made (or in flight) by this instance. */
  get toppedUp(): bigint {
    return this.total;
  }

  /** Records a deposit seen for the channel. */
  observe(target: TopUpTarget, deposit: bigint): void {
    if (target.deposit === undefined || deposit > target.deposit) target.deposit = deposit;
  }

  /** Whether a threshold top-up should start now, given the highest amount committed on the channel. */
  wants(target: TopUpTarget, committed: bigint, now = Date.now()): boolean {
    if (target.deposit === undefined || target.topUp) return false;
    if (
      target.failedAt !== undefined &&
      now - target.failedAt < (this.options.retryAfterMs ?? AUTO_TOP_UP_DEFAULTS.retryAfterMs)
    ) {
      return false;
    }
    if (this.total + this.options.amount > this.maxTopUpTotal) return false;
    return target.deposit - committed < this.options.below;
  }

  /**
   * Tops the channel up, or joins the top-up already in flight. Throws {@link PaymentLimitError}
   * (`maxTopUpTotal`) when the budget does not allow it, and whatever the funding step throws.
   */
  run(
    target: TopUpTarget,
    offer: ChannelOffer,
    resourceUrl: string,
    reason: TopUpEvent["reason"],
  ): Promise<FundingResult> {
    if (target.topUp) return target.topUp;
    const { amount } = this.options;
    if (this.total + amount > this.maxTopUpTotal) {
      return Promise.reject(
        new PaymentLimitError("maxTopUpTotal", amount, this.maxTopUpTotal, this.total, resourceUrl),
      );
    }
    this.total += amount;
    const pending = (async () => {
      try {
        const result = await this.topUpImpl({
          terms: termsFromOffer(offer, resourceUrl),
          funding: this.options.funding,
          channelId: target.channelId,
          amount,
        });
        this.observe(target, result.deposit);
        target.failedAt = undefined;
        this.options.onTopUp?.({
          channelId: target.channelId,
          amount,
          txHash: result.txHash,
          deposit: result.deposit,
          reason,
        });
        return result;
      } catch (error) {
        // A relay refusal (4xx) sent nothing: the budget is given back. Any other failure may
        // have moved funds (a lost answer), so it stays counted.
        if (error instanceof ChannelOperationError && error.status !== undefined && error.status < 500) {
          this.total -= amount;
        }
        if (reason === "below") target.failedAt = Date.now();
        throw error;
      } finally {
        target.topUp = undefined;
      }
    })();
    target.topUp = pending;
    return pending;
  }
}
