import { getAddress, isAddressEqual, type Address, type Hex } from "viem";
import type { ChannelRecord } from "../protocol/channel";
import { dollarsToToken, RATE_DECIMALS } from "../protocol/price";
import {
  parseQuote,
  QUOTE_NEVER_EXPIRES,
  recoverQuoteSigner,
  signQuote,
  type Quote,
  type SignedQuote,
} from "../protocol/quote";
import type { ReasonCode } from "../protocol/reasons";
import type { TokenSettings } from "../shared/config";
import type { RateSource } from "./rateSource";

/** The rate of a dollar stablecoin: one dollar per token. */
export const ONE_DOLLAR = 10n ** BigInt(RATE_DECIMALS);

/** A token the server accepts, with where its rate comes from. */
export interface AcceptedToken {
  readonly settings: TokenSettings;
  readonly source: RateSource;
}

export interface QuoteBookOptions {
  readonly tokens: readonly AcceptedToken[];
  /** Decimals of the dollar prices it converts (the first token's). */
  readonly usdDecimals: number;
  /** The receipt key: it signs quotes too. */
  readonly privateKey: Hex;
  readonly signer: Address;
  readonly chainId: number;
  readonly contract: Address;
  /** Unix seconds; injectable for tests. */
  readonly nowSec?: () => number;
}

/** One token's terms for a 402 right now. */
export interface TokenOffer {
  readonly settings: TokenSettings;
  /** Dollars per token (18 decimals). */
  readonly rate: bigint;
  /** The quote to pay under; absent for a dollar token. */
  readonly quote?: SignedQuote;
}

/** What a voucher on a channel is charged for a request priced in dollars. */
export type ChannelCharge =
  | {
      readonly ok: true;
      readonly settings: TokenSettings;
      /** In the channel's token. */
      readonly amount: bigint;
      readonly rate: bigint;
      /** The quote it was charged under; absent for a dollar token. */
      readonly quote?: Quote;
    }
  | {
      readonly ok: false;
      readonly reason: Extract<ReasonCode, "wrong_token" | "invalid_quote" | "quote_expired" | "rate_unavailable">;
    };

/** Most quotes whose signatures are remembered as verified; the cache starts over when full. */
const MAX_KNOWN_QUOTES = 10_000;

/**
 * Prices requests priced in dollars in each accepted token, and issues and checks the signed
 * quotes that lock a token's rate (docs/protocol.md, "Prices in dollars, quotes and rates").
 *
 * Everything here answers from memory: rates come from their sources (a price feed is read by the
 * chain watcher, not here), the current quote of each token is re-signed only when the rate moved
 * or half its lifetime has passed, and a quote's signature is recovered once, then remembered.
 */
export class QuoteBook {
  private readonly byAddress = new Map<string, AcceptedToken>();
  private readonly current = new Map<string, SignedQuote>();
  private readonly bound = new Map<bigint, SignedQuote>();
  private readonly known = new Map<string, Quote>();
  private readonly nowSec: () => number;

  constructor(private readonly options: QuoteBookOptions) {
    for (const token of options.tokens) this.byAddress.set(token.settings.address.toLowerCase(), token);
    this.nowSec = options.nowSec ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Whether a token is charged at exactly one dollar, without quotes. */
  static isDollar(token: AcceptedToken): boolean {
    const rate = token.settings.rate;
    return rate.kind === "fixed" && rate.rate === ONE_DOLLAR;
  }

  /** Decimals of the dollar prices it converts. */
  get usdDecimals(): number {
    return this.options.usdDecimals;
  }

  /** The accepted tokens, in configuration order. */
  tokens(): readonly AcceptedToken[] {
    return this.options.tokens;
  }

  /**
   * The terms of every token that can be paid in now, in configuration order: a token whose rate
   * is unavailable (a stale feed) is left out rather than quoted at a wrong price.
   */
  offers(): TokenOffer[] {
    const offers: TokenOffer[] = [];
    for (const token of this.options.tokens) {
      if (QuoteBook.isDollar(token)) {
        offers.push({ settings: token.settings, rate: ONE_DOLLAR });
        continue;
      }
      const quote = this.quoteOf(token);
      if (quote) offers.push({ settings: token.settings, rate: BigInt(quote.rate), quote });
    }
    return offers;
  }

  /** A dollar price in a token at `rate`, rounded up. */
  amountIn(settings: TokenSettings, usd: bigint, rate: bigint): bigint {
    return dollarsToToken(usd, this.options.usdDecimals, rate, settings.decimals);
  }

  /**
   * What a voucher on `record`'s channel is charged for a request priced `usd`, paying under the
   * wire quote `wire` (`accepted.extra.quote`, unchecked input).
   */
  charge(usd: bigint, record: ChannelRecord, wire: unknown): ChannelCharge {
    const token = this.byAddress.get(record.token.toLowerCase());
    if (!token) return { ok: false, reason: "wrong_token" };
    const settings = token.settings;
    if (QuoteBook.isDollar(token))
      return { ok: true, settings, amount: this.amountIn(settings, usd, ONE_DOLLAR), rate: ONE_DOLLAR };
    const quote = this.verify(wire);
    if (
      !quote ||
      !isAddressEqual(quote.token, settings.address) ||
      (quote.channelId !== 0n && quote.channelId !== record.channelId)
    ) {
      return { ok: false, reason: "invalid_quote" };
    }
    if (quote.expiry < this.nowSec()) {
      return { ok: false, reason: this.quoteOf(token) ? "quote_expired" : "rate_unavailable" };
    }
    return { ok: true, settings, amount: this.amountIn(settings, usd, quote.rate), rate: quote.rate, quote };
  }

  /**
   * The quote that holds `quote`'s rate for channel `channelId`'s life, when its token locks rates
   * per channel (`lockRate: "channel"`) and `quote` is not bound yet; undefined otherwise.
   */
  lockForChannel(channelId: bigint, quote: Quote): SignedQuote | undefined {
    const token = this.byAddress.get(quote.token.toLowerCase());
    if (token?.settings.lockRate !== "channel" || quote.channelId !== 0n) return undefined;
    // The first quote a channel paid under is the one it keeps.
    const existing = this.bound.get(channelId);
    if (existing) return existing;
    const signed = this.sign({ ...quote, channelId, expiry: QUOTE_NEVER_EXPIRES });
    this.bound.set(channelId, signed);
    return signed;
  }

  /** The token's current quote, re-signed when the rate moved or half its lifetime passed; undefined while its rate is unavailable. */
  private quoteOf(token: AcceptedToken): SignedQuote | undefined {
    const now = this.nowSec();
    const reading = token.source.current(now);
    if (!reading.ok) return undefined;
    const key = token.settings.address.toLowerCase();
    const cached = this.current.get(key);
    const ttl = token.settings.quoteTtlSec;
    if (cached && BigInt(cached.rate) === reading.rate && cached.expiry - now >= ttl / 2) return cached;
    const signed = this.sign({
      token: getAddress(token.settings.address),
      rate: reading.rate,
      expiry: now + ttl,
      channelId: 0n,
    });
    this.current.set(key, signed);
    return signed;
  }

  private sign(quote: Quote): SignedQuote {
    const { privateKey, chainId, contract } = this.options;
    const signed = signQuote(privateKey, chainId, contract, quote);
    this.remember(signed.signature, quote);
    return signed;
  }

  /** The fields of a wire quote this server signed; undefined for anything else. */
  private verify(wire: unknown): Quote | undefined {
    const quote = parseQuote(wire);
    if (!quote) return undefined;
    const signature = (wire as SignedQuote).signature.toLowerCase();
    const known = this.known.get(signature);
    if (known) return sameQuote(known, quote) ? quote : undefined;
    const { chainId, contract, signer } = this.options;
    const recovered = recoverQuoteSigner(chainId, contract, wire as SignedQuote);
    if (!recovered || !isAddressEqual(recovered, signer)) return undefined;
    this.remember(signature, quote);
    return quote;
  }

  private remember(signature: string, quote: Quote): void {
    if (this.known.size >= MAX_KNOWN_QUOTES) this.known.clear();
    this.known.set(signature.toLowerCase(), quote);
  }
}

function sameQuote(a: Quote, b: Quote): boolean {
  return isAddressEqual(a.token, b.token) && a.rate === b.rate && a.expiry === b.expiry && a.channelId === b.channelId;
}
