/**
 * Prices. Routes may be priced in dollars ("$0.001") for a USD stablecoin, or in the token's
 * atomic units (a bigint, or a string of digits).
 */
export type Price = bigint | string;

/** Converts a price to atomic units of a token with `decimals` decimals; throws on bad input. */
export function toAtomic(price: Price, decimals: number): bigint {
  if (typeof price === "bigint") {
    if (price < 0n) throw new RangeError(`price must not be negative: ${price}`);
    return price;
  }
  const text = price.trim();
  if (/^\d+$/.test(text)) return BigInt(text);
  const match = /^\$(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) throw new RangeError(`price must be "$<dollars>" or atomic units, got "${price}"`);
  const [, whole, fraction = ""] = match;
  if (fraction.length > decimals) {
    throw new RangeError(`price "${price}" has more than ${decimals} decimals`);
  }
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fraction.padEnd(decimals, "0") || "0");
}

/** Formats atomic units as dollars, e.g. 1500n with 6 decimals → "$0.0015". */
export function formatDollars(atomic: bigint, decimals: number): string {
  const scale = 10n ** BigInt(decimals);
  const whole = atomic / scale;
  const fraction = (atomic % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `$${whole}${fraction ? `.${fraction}` : ""}`;
}

/** Decimals of an exchange rate: the dollar value of one whole token (1.08 is 108 × 10^16). */
export const RATE_DECIMALS = 18;
const RATE_SCALE = 10n ** BigInt(RATE_DECIMALS);

/** Reads a rate written as a decimal number of dollars per token ("1.08"); throws on bad input. */
export function parseRate(text: string): bigint {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match || (match[2]?.length ?? 0) > RATE_DECIMALS) {
    throw new RangeError(`rate must be a decimal number with at most ${RATE_DECIMALS} decimals, got "${text}"`);
  }
  const rate = BigInt(match[1]) * RATE_SCALE + BigInt((match[2] ?? "").padEnd(RATE_DECIMALS, "0"));
  if (rate === 0n) throw new RangeError("rate must be above zero");
  return rate;
}

/** Writes a rate as a decimal number of dollars per token, e.g. "1.08". */
export function formatRate(rate: bigint): string {
  const fraction = (rate % RATE_SCALE).toString().padStart(RATE_DECIMALS, "0").replace(/0+$/, "");
  return `${rate / RATE_SCALE}${fraction ? `.${fraction}` : ""}`;
}

/** A feed's answer (`answer` with `decimals` decimals) as a rate. */
export function rateFromAnswer(answer: bigint, decimals: number): bigint {
  return decimals <= RATE_DECIMALS
    ? answer * 10n ** BigInt(RATE_DECIMALS - decimals)
    : answer / 10n ** BigInt(decimals - RATE_DECIMALS);
}

/**
 * Converts a dollar amount (`usd` atomic units with `usdDecimals` decimals) into atomic units of a
 * token worth `rate` dollars, rounded up: the seller never receives less than the dollar price.
 */
export function dollarsToToken(usd: bigint, usdDecimals: number, rate: bigint, tokenDecimals: number): bigint {
  if (rate <= 0n) throw new RangeError(`rate must be above zero, got ${rate}`);
  const numerator = usd * 10n ** BigInt(tokenDecimals) * RATE_SCALE;
  const denominator = rate * 10n ** BigInt(usdDecimals);
  return (numerator + denominator - 1n) / denominator;
}
