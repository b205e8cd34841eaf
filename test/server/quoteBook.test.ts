import { expect } from "chai";
import { privateKeyToAccount } from "viem/accounts";
import type { Address } from "viem";
import { parseQuote, signQuote } from "../../src/protocol/quote";
import { parseRate } from "../../src/protocol/price";
import { QuoteBook, ONE_DOLLAR, type AcceptedToken } from "../../src/server/quoteBook";
import type { RateReading, RateSource } from "../../src/server/rateSource";
import { fixedRate } from "../../src/server/rateSource";
import type { TokenSettings } from "../../src/shared/config";
import { ASSET, CHAIN_ID, CONTRACT, RECEIPT_KEY, channelRecord, payerChannel } from "../helpers/memoryStore";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

const EURC: Address = "0x60a3E35Cc302bFA44Cb288Bc5a4F316Fdb1adb42";
const SIGNER = privateKeyToAccount(RECEIPT_KEY).address;
const PRICE = 1_000n; // $0.001

/** A rate source a test moves by hand (what a price feed reader would report). */
class ManualRate implements RateSource {
  reading: RateReading = { ok: true, rate: parseRate("1.08") };
  current(): RateReading {
    return this.reading;
  }
}

function settings(overrides: Partial<TokenSettings>): TokenSettings {
  return {
    address: ASSET,
    symbol: "USDC",
    decimals: 6,
    name: "USD Coin",
    version: "2",
    rate: { kind: "fixed", rate: ONE_DOLLAR },
    quoteTtlSec: 120,
    lockRate: "quote",
    ...overrides,
  };
}

describe("quote book", () => {
  let now: number;
  let eurRate: ManualRate;
  let tokens: AcceptedToken[];

  function book(lockRate: "quote" | "channel" = "quote"): QuoteBook {
    tokens = [
      { settings: settings({}), source: fixedRate(ONE_DOLLAR) },
      {
        settings: settings({
          address: EURC,
          symbol: "EURC",
          name: "EURC",
          rate: { kind: "feed", feed: CONTRACT, maxAgeSec: 600 },
          lockRate,
        }),
        source: eurRate,
      },
    ];
    return new QuoteBook({
      tokens,
      usdDecimals: 6,
      privateKey: RECEIPT_KEY,
      signer: SIGNER,
      chainId: CHAIN_ID,
      contract: CONTRACT,
      nowSec: () => now,
    });
  }

  const eurcChannel = channelRecord({ token: EURC });
  const usdcChannel = channelRecord({ token: ASSET });

  beforeEach(() => {
    now = 1_800_000_000;
    eurRate = new ManualRate();
  });

  it("offers USDC without a quote and EURC with a signed quote at the current rate", () => {
    const offers = book().offers();
    expect(offers.map((o) => o.settings.symbol)).to.deep.equal(["USDC", "EURC"]);
    expect(offers[0]).to.not.have.property("quote");
    const quote = offers[1].quote!;
    expect(parseQuote(quote)).to.deep.equal({ token: EURC, rate: parseRate("1.08"), expiry: now + 120, channelId: 0n });
    expect(quote.signer).to.equal(SIGNER);
    expect(book().amountIn(offers[1].settings, PRICE, offers[1].rate)).to.equal(926n);
    expect(book().charge(PRICE, usdcChannel, undefined)).to.deep.include({ ok: true, amount: PRICE, rate: ONE_DOLLAR });
  });

  it("reuses the quote while the rate holds and half its life remains; re-signs after", () => {
    const b = book();
    const first = b.offers()[1].quote!;
    now += 60;
    expect(b.offers()[1].quote).to.equal(first);
    now += 1;
    expect(b.offers()[1].quote!.expiry).to.equal(now + 120);
  });

  it("a rate that moves 5% after the quote: the voucher under the quote is charged at the quoted rate", () => {
    const b = book();
    const quote = b.offers()[1].quote!;
    eurRate.reading = { ok: true, rate: parseRate("1.134") };
    now += 30;
    const fresh = b.offers()[1].quote!;
    expect(fresh.rate).to.equal(parseRate("1.134").toString());
    expect(b.charge(PRICE, eurcChannel, quote)).to.deep.include({ ok: true, amount: 926n, rate: parseRate("1.08") });
    expect(b.charge(PRICE, eurcChannel, fresh)).to.deep.include({ ok: true, amount: 882n, rate: parseRate("1.134") });
  });

  it("an expired quote is quote_expired while the rate is available, rate_unavailable while the feed is stale", () => {
    const b = book();
    const quote = b.offers()[1].quote!;
    now += 120;
    expect(b.charge(PRICE, eurcChannel, quote).ok, "valid through its expiry second").to.equal(true);
    now += 1;
    expect(b.charge(PRICE, eurcChannel, quote)).to.deep.equal({ ok: false, reason: "quote_expired" });
    eurRate.reading = { ok: false, reason: "rate_unavailable", detail: "stale" };
    expect(b.charge(PRICE, eurcChannel, quote)).to.deep.equal({ ok: false, reason: "rate_unavailable" });
    expect(
      b.offers().map((o) => o.settings.symbol),
      "a stale token is not offered",
    ).to.deep.equal(["USDC"]);
  });

  it("refuses a missing, altered, foreign, other-token or other-channel quote as invalid_quote", () => {
    const b = book();
    const quote = b.offers()[1].quote!;
    const invalid = { ok: false, reason: "invalid_quote" };
    expect(b.charge(PRICE, eurcChannel, undefined)).to.deep.equal(invalid);
    expect(b.charge(PRICE, eurcChannel, { ...quote, rate: parseRate("2").toString() })).to.deep.equal(invalid);
    expect(b.charge(PRICE, eurcChannel, { ...quote, expiry: quote.expiry + 1 })).to.deep.equal(invalid);
    const foreign = signQuote(HARDHAT_KEYS[4], CHAIN_ID, CONTRACT, parseQuote(quote)!);
    expect(b.charge(PRICE, eurcChannel, foreign)).to.deep.equal(invalid);
    const usdcQuote = signQuote(RECEIPT_KEY, CHAIN_ID, CONTRACT, { ...parseQuote(quote)!, token: ASSET });
    expect(b.charge(PRICE, eurcChannel, usdcQuote)).to.deep.equal(invalid);
    const otherChannel = signQuote(RECEIPT_KEY, CHAIN_ID, CONTRACT, {
      ...parseQuote(quote)!,
      channelId: payerChannel(7n),
    });
    expect(b.charge(PRICE, eurcChannel, otherChannel)).to.deep.equal(invalid);
    expect(b.charge(PRICE, channelRecord({ token: CONTRACT }), quote)).to.deep.equal({
      ok: false,
      reason: "wrong_token",
    });
  });

  it("checks a quote it did not sign itself (a restart) by its signature", () => {
    const quote = book().offers()[1].quote!;
    const restarted = book();
    expect(restarted.charge(PRICE, eurcChannel, quote)).to.deep.include({ ok: true, amount: 926n });
    expect(restarted.charge(PRICE, eurcChannel, { ...quote, rate: "1" })).to.deep.equal({
      ok: false,
      reason: "invalid_quote",
    });
  });

  it("lockRate channel: the first quote paid under is bound to the channel for its life", () => {
    const b = book("channel");
    const quote = b.offers()[1].quote!;
    const bound = b.lockForChannel(eurcChannel.channelId, parseQuote(quote)!)!;
    expect(parseQuote(bound)).to.deep.include({ channelId: eurcChannel.channelId, rate: parseRate("1.08") });
    expect(b.lockForChannel(eurcChannel.channelId, parseQuote(quote)!)).to.equal(bound);
    expect(b.lockForChannel(eurcChannel.channelId, parseQuote(bound)!), "already bound").to.equal(undefined);
    eurRate.reading = { ok: true, rate: parseRate("1.2") };
    const later = b.offers()[1].quote!;
    expect(b.lockForChannel(eurcChannel.channelId, parseQuote(later)!), "the first binding stays").to.equal(bound);
    eurRate.reading = { ok: true, rate: parseRate("1.5") };
    now += 10 * 365 * 24 * 3600;
    expect(b.charge(PRICE, eurcChannel, bound)).to.deep.include({ ok: true, amount: 926n, rate: parseRate("1.08") });
    const other = channelRecord({ token: EURC, channelId: payerChannel(9n) });
    expect(b.charge(PRICE, other, bound)).to.deep.equal({ ok: false, reason: "invalid_quote" });
    expect(book("quote").lockForChannel(eurcChannel.channelId, parseQuote(quote)!)).to.equal(undefined);
  });
});
