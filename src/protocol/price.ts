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
