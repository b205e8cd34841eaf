import type { FeedReading } from "../chain/priceFeed";
import { rateFromAnswer } from "../protocol/price";
import type { ReasonCode } from "../protocol/reasons";

/** A token's exchange rate now: dollars per whole token, 18 decimals; or why there is none. */
export type RateReading =
  | { readonly ok: true; readonly rate: bigint }
  | { readonly ok: false; readonly reason: Extract<ReasonCode, "rate_unavailable">; readonly detail: string };

/**
 * Where a token's rate comes from. Pluggable: a fixed rate, a Chainlink-style feed read by the
 * chain watcher, or anything that answers synchronously from memory (it is asked on the 402 path).
 */
export interface RateSource {
  /** The rate at `nowSec` (Unix seconds). */
  current(nowSec: number): RateReading;
}

/** A rate that never moves (1 for a dollar stablecoin). */
export function fixedRate(rate: bigint): RateSource {
  if (rate <= 0n) throw new RangeError(`a fixed rate must be above zero, got ${rate}`);
  const reading: RateReading = { ok: true, rate };
  return { current: () => reading };
}

/**
 * The rate of a price feed's latest reading, refused as `rate_unavailable` when there is none yet,
 * when the answer is not positive, or when the feed last updated more than `maxAgeSec` ago: a stale
 * feed stops quoting instead of quoting a wrong price.
 */
export function feedRate(feed: { latest(): FeedReading | undefined }, maxAgeSec: number): RateSource {
  return {
    current(nowSec) {
      const reading = feed.latest();
      if (!reading) return { ok: false, reason: "rate_unavailable", detail: "the price feed has not been read yet" };
      if (reading.answer <= 0n) {
        return { ok: false, reason: "rate_unavailable", detail: `the price feed answers ${reading.answer}` };
      }
      const age = nowSec - reading.updatedAt;
      if (age > maxAgeSec) {
        return {
          ok: false,
          reason: "rate_unavailable",
          detail: `the price feed last updated ${age} s ago, more than its ${maxAgeSec} s maximum age`,
        };
      }
      return { ok: true, rate: rateFromAnswer(reading.answer, reading.decimals) };
    },
  };
}
