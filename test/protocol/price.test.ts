import { expect } from "chai";
import { formatDollars, toAtomic } from "../../src/protocol/price";

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
});
