import { expect } from "chai";
import {
  dollarsToToken,
  formatDollars,
  formatRate,
  parseRate,
  rateFromAnswer,
  toAtomic,
} from "../../src/protocol/price";

describe("prices", () => {
  it('converts "$" prices to atomic units of a 6-decimal token', () => {
    expect(toAtomic("$0.001", 6)).to.equal(1_000n);
    expect(toAtomic("$1", 6)).to.equal(1_000_000n);
    expect(toAtomic("$1.5", 6)).to.equal(1_500_000n);
    expect(toAtomic("$0.000001", 6)).to.equal(1n);
    expect(toAtomic("$0", 6)).to.equal(0n);
    expect(toAtomic("$12.345678", 6)).to.equal(12_345_678n);
    expect(toAtomic("  $0.25  ", 6)).to.equal(250_000n);
  });

  it("honours the token's decimals", () => {
    expect(toAtomic("$1", 18)).to.equal(10n ** 18n);
    expect(toAtomic("$0.1", 1)).to.equal(1n);
    expect(toAtomic("$7", 0)).to.equal(7n);
  });

  it("takes atomic units as a bigint or a string of digits, unchanged", () => {
    expect(toAtomic(1_500n, 6)).to.equal(1_500n);
    expect(toAtomic(0n, 6)).to.equal(0n);
    expect(toAtomic("1500", 6)).to.equal(1_500n);
    expect(toAtomic(" 42 ", 6)).to.equal(42n);
    expect(toAtomic("79228162514264337593543950335", 6)).to.equal((1n << 96n) - 1n);
  });

  const bad: [string | bigint, number][] = [
    [-1n, 6],
    ["-1", 6],
    ["$-1", 6],
    ["$", 6],
    ["$.5", 6],
    ["$1.", 6],
    ["$1.2.3", 6],
    ["1.5", 6],
    ["$0.0000001", 6],
    ["$0.1", 0],
    ["1e6", 6],
    ["0x10", 6],
    ["$1,000", 6],
    ["USD 1", 6],
    ["1$", 6],
    ["", 6],
    ["  ", 6],
    ["$ 1", 6],
    ["€1", 6],
    ["١٢", 6],
  ];
  for (const [price, decimals] of bad) {
    it(`refuses ${JSON.stringify(typeof price === "bigint" ? `${price}n` : price)} with ${decimals} decimals`, () => {
      expect(() => toAtomic(price, decimals)).to.throw(RangeError);
    });
  }

  it("formats atomic units as dollars", () => {
    expect(formatDollars(1_500n, 6)).to.equal("$0.0015");
    expect(formatDollars(1_000_000n, 6)).to.equal("$1");
    expect(formatDollars(0n, 6)).to.equal("$0");
    expect(formatDollars(12_345_678n, 6)).to.equal("$12.345678");
    for (const price of ["$0.001", "$3.14", "$100"]) expect(formatDollars(toAtomic(price, 6), 6)).to.equal(price);
  });

  it("reads and writes rates as dollars per token with 18 decimals", () => {
    expect(parseRate("1.08")).to.equal(1_080_000_000_000_000_000n);
    expect(parseRate("1")).to.equal(10n ** 18n);
    expect(parseRate("0.000000000000000001")).to.equal(1n);
    expect(formatRate(1_080_000_000_000_000_000n)).to.equal("1.08");
    expect(formatRate(10n ** 18n)).to.equal("1");
    expect(formatRate(parseRate("1.134"))).to.equal("1.134");
    for (const bad of ["0", "0.0", "-1", "1,08", "1.0000000000000000001", "$1", ""]) {
      expect(() => parseRate(bad), bad).to.throw(RangeError);
    }
  });

  it("scales a feed's answer to a rate whatever its decimals", () => {
    expect(rateFromAnswer(108_000_000n, 8)).to.equal(parseRate("1.08"));
    expect(rateFromAnswer(parseRate("1.08"), 18)).to.equal(parseRate("1.08"));
    expect(rateFromAnswer(1_080_000_000_000_000_000_000n, 21)).to.equal(parseRate("1.08"));
  });

  it("converts dollars to a token at a rate, rounding up so the seller never gets less", () => {
    // $0.001 in EURC at 1.08 $/EURC: 925.925... micro-EURC, charged 926.
    expect(dollarsToToken(1_000n, 6, parseRate("1.08"), 6)).to.equal(926n);
    expect(dollarsToToken(1_080n, 6, parseRate("1.08"), 6)).to.equal(1_000n);
    expect(dollarsToToken(1_000n, 6, parseRate("1"), 6)).to.equal(1_000n);
    expect(dollarsToToken(1_000n, 6, parseRate("1"), 18)).to.equal(10n ** 15n);
    expect(dollarsToToken(1n, 6, parseRate("1.08"), 2)).to.equal(1n);
    expect(dollarsToToken(0n, 6, parseRate("1.08"), 6)).to.equal(0n);
    // Never below the dollar value: token × rate ≥ dollars for many prices.
    for (let usd = 1n; usd < 5_000n; usd += 37n) {
      const token = dollarsToToken(usd, 6, parseRate("1.0731"), 6);
      expect(token * parseRate("1.0731") >= usd * 10n ** 18n, `${usd}`).to.equal(true);
      expect((token - 1n) * parseRate("1.0731") < usd * 10n ** 18n, `${usd}`).to.equal(true);
    }
    expect(() => dollarsToToken(1n, 6, 0n, 6)).to.throw(RangeError);
  });
});
