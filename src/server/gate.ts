import type { Address, Hex } from "viem";
import {
  SCHEME,
  X402_VERSION,
  channelIdHex,
  decodePaymentSignature,
  decodeHeader,
  encodeHeader,
  type ChannelOffer,
  type ChannelView,
  type PaymentRequired,
  type Pricing,
  type SettleExtra,
  type SettleResponse,
} from "../protocol/headers";
import { formatDollars } from "../protocol/price";
import { statusOf, type ReasonCode } from "../protocol/reasons";
import { requestHash, type ReceiptSigner, type SignedReceipt } from "../protocol/receipt";
import type { ChannelRecord } from "../protocol/channel";
import type { AcceptedVoucher, PaymentStore } from "../store/types";
import { decodeExactPayment, EXACT_SCHEME, type ExactOffer, type ExactSettleResponse } from "../protocol/exact";
import type { CheckResult, Ticket, VerificationEngine } from "./engine";
import type { ExactPayments } from "./exactPayments";
import type { ChannelCharge, QuoteBook } from "./quoteBook";

/** What the gate needs to describe its offer in a 402. */
export interface OfferTerms {
  /** CAIP-2 network id. */
  readonly network: string;
  readonly contract: Address;
  readonly asset: Address;
  readonly payee: Address;
  readonly decimals: number;
  readonly tokenName: string;
  readonly tokenVersion: string;
  readonly minDeposit: bigint;
  readonly minWithdrawDelay: number;
  readonly maxTimeoutSeconds?: number;
  /** Path of the gasless relay endpoint, if served. */
  readonly relay?: string;
}

/** The token a request was charged in and the rate it was charged at. */
export interface PricedIn {
  readonly symbol: string;
  /** Dollars per whole token, 18 decimals. */
  readonly rate: bigint;
}

/** Observes the gate, for metrics and logs. */
export interface GateObserver {
  accepted?(ticket: Ticket, verifySeconds: number, pricedIn?: PricedIn): void;
  rejected?(reason: ReasonCode): void;
  retried?(channelId: bigint, amount: bigint): void;
}

export interface GateOptions {
  readonly engine: VerificationEngine;
  readonly store: PaymentStore;
  readonly receipts: ReceiptSigner;
  readonly terms: OfferTerms;
  /**
   * Routes priced in dollars, paid in several tokens: the 402 offers one entry per token the
   * book can price now, and each voucher is charged in its channel's token under its quote.
   * Without it, `terms.asset` is the one token and prices are in its atomic units.
   */
  readonly quotes?: QuoteBook;
  /**
   * Fetches a channel the engine does not know yet (once, off the request path of known
   * channels). A channel of another payee may be returned: the gate answers it `wrong_payee`
   * without adding it to the engine.
   */
  readonly fetchChannel?: (channelId: bigint) => Promise<ChannelRecord | undefined>;
  /** How long a retry of an accepted voucher is answered again (ms); later it is refused as reused. */
  readonly retryWindowMs?: number;
  readonly observer?: GateObserver;
  /** Also offer x402 `exact` (one EIP-3009 transfer per request), settled by this. */
  readonly exact?: ExactPayments;
}

/** A 402 body: x402's PaymentRequired, offering `channel` (one offer per token) and, when enabled, `exact`. */
export type OfferedPaymentRequired = Omit<PaymentRequired, "accepts"> & {
  readonly accepts: readonly (ChannelOffer | ExactOffer)[];
};

/** A request to pay for. */
export interface PaidRequest {
  readonly method: string;
  /** Path and query, e.g. "/weather?city=Lisbon". */
  readonly pathAndQuery: string;
  /** Absolute URL of the resource, for the 402's `resource.url`. */
  readonly url: string;
  /** The PAYMENT-SIGNATURE header, if any. */
  readonly paymentHeader: string | undefined;
  /** Price in atomic units (the maximum, for "upto"); in dollars (the first token's decimals) with a quote book. */
  readonly price: bigint;
  readonly pricing: Pricing;
  readonly description?: string;
}

/** A payment refused: send `status` with the PAYMENT-REQUIRED header and `body`. */
export interface Refusal {
  readonly ok: false;
  readonly status: number;
  readonly reason: ReasonCode;
  readonly headers: Record<string, string>;
  readonly body: OfferedPaymentRequired;
}

/** A durable, accepted payment: serve the request, then attach {@link Payment.responseHeader}. */
export type Payment = ChannelPayment | ExactPayment;

/** A voucher payment on a channel. */
export interface ChannelPayment {
  readonly ok: true;
  readonly scheme: typeof SCHEME;
  readonly channelId: bigint;
  readonly amount: bigint;
  /** The channel's payer (as in the PAYMENT-RESPONSE). */
  readonly payer: Address;
  /** True when this request repeats an already-accepted voucher (not charged again). */
  readonly retry: boolean;
  /**
   * Undefined once the voucher is durable, which {@link PaymentGate.authorize} waits for unless
   * asked for an early answer. Otherwise it settles when the store's write does: true, durable;
   * false, the write failed, the charge is released, and the request must be refused with
   * `store_unavailable` ({@link PaymentGate.refuse}). Nothing may be sent to the client before.
   */
  readonly durable: Promise<boolean> | undefined;
  /**
   * For "upto" routes: sets the final charge (≤ the price). Call before the response headers go
   * out; without a call the full price is charged.
   */
  charge(finalCharge: bigint): void;
  /** The PAYMENT-RESPONSE header value for the final charge. */
  responseHeader(): string;
  /** The decoded PAYMENT-RESPONSE (x402's `SettleResponse`; `amount` is this request's charge). */
  response(): SettleResponse;
}

/** An `exact` payment: its transfer is mined (that is its durability), nothing is left to store or claim. */
export interface ExactPayment {
  readonly ok: true;
  readonly scheme: typeof EXACT_SCHEME;
  /** Who signed the transfer. */
  readonly payer: Address;
  readonly retry: false;
  readonly durable: undefined;
  /** An exact payment transferred the full price: a lower final charge changes nothing. */
  charge(finalCharge: bigint): void;
  responseHeader(): string;
  response(): ExactSettleResponse;
}

export type GateResult = Payment | Refusal;

export interface AuthorizeOptions {
  /**
   * Answer as soon as the voucher is verified and its write queued, before the write is durable
   * (see {@link Payment.durable}): the caller may start the work while the disk syncs, and holds
   * the response until it has synced. Default false: resolve only once durable.
   */
  readonly early?: boolean;
}

const DEFAULT_RETRY_WINDOW_MS = 60_000;

/**
 * The payment gate: framework-neutral logic shared by the Express middleware and the reverse
 * proxy. It decodes the voucher, applies the engine's rules, signs a receipt, makes the voucher
 * durable (group-committed fsync) and only then lets the request through.
 */
export class PaymentGate {
  /** Accepted vouchers whose write is under way: a retry meanwhile waits for it. */
  private readonly inflight = new Map<string, { record: AcceptedVoucher; settled: Promise<boolean> }>();
  /** The network as a JSON string, for the PAYMENT-RESPONSE built without JSON.stringify. */
  private readonly networkJson: string;
  private readonly retryWindowMs: number;
  private readonly network: string;
  private readonly contract: string;
  private readonly assets: ReadonlySet<string>;
  private readonly payee: string;

  constructor(private readonly options: GateOptions) {
    this.retryWindowMs = options.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS;
    this.network = options.terms.network;
    this.networkJson = JSON.stringify(options.terms.network);
    this.contract = options.terms.contract.toLowerCase();
    this.assets = new Set(
      options.quotes
        ? options.quotes.tokens().map((t) => t.settings.address.toLowerCase())
        : [options.terms.asset.toLowerCase()],
    );
    this.payee = options.terms.payee.toLowerCase();
  }

  /** The first offer for a route priced `price` (the only one without a quote book). */
  offer(price: bigint, pricing: Pricing): ChannelOffer {
    const [first] = this.offers(price, pricing);
    if (!first) throw new Error("no token can be offered: every token's rate is unavailable");
    return first;
  }

  /**
   * The offers for a route priced `price`: one per token the server can be paid in now, each
   * `amount` in that token, with the quote it was computed at for a token not at one dollar.
   */
  offers(price: bigint, pricing: Pricing): ChannelOffer[] {
    const t = this.options.terms;
    const common = {
      contract: t.contract,
      pricing,
      minDeposit: t.minDeposit.toString(),
      minWithdrawDelay: t.minWithdrawDelay,
      receiptSigner: this.options.receipts.address,
      ...(t.relay ? { relay: t.relay } : {}),
    };
    const base = {
      scheme: SCHEME as typeof SCHEME,
      network: t.network,
      payTo: t.payee,
      maxTimeoutSeconds: t.maxTimeoutSeconds ?? 60,
    };
    const quotes = this.options.quotes;
    if (!quotes) {
      return [
        {
          ...base,
          amount: price.toString(),
          asset: t.asset,
          extra: { name: t.tokenName, version: t.tokenVersion, ...common, decimals: t.decimals },
        },
      ];
    }
    return quotes.offers().map(({ settings, rate, quote }) => ({
      ...base,
      amount: quotes.amountIn(settings, price, rate).toString(),
      asset: settings.address,
      extra: {
        name: settings.name,
        version: settings.version,
        ...common,
        decimals: settings.decimals,
        price: formatDollars(price, quotes.usdDecimals),
        ...(quote ? { quote } : {}),
      },
    }));
  }

  /**
   * A refusal carrying the payment terms and, when known, the server's view of the channel in
   * the offer's `extra.channelState` (where x402 schemes carry channel state).
   */
  refuse(request: PaidRequest, reason: ReasonCode, channel?: ChannelView): Refusal {
    const offers = this.offers(request.price, request.pricing);
    const exact = this.options.exact;
    const body: OfferedPaymentRequired = {
      x402Version: X402_VERSION,
      ...(reason === "payment_required" ? {} : { error: reason }),
      resource: { url: request.url, ...(request.description ? { description: request.description } : {}) },
      accepts: [
        ...(channel ? offers.map((offer) => ({ ...offer, extra: { ...offer.extra, channelState: channel } })) : offers),
        // `exact` is priced in the dollar token only (the server refuses to offer it otherwise).
        ...(exact ? [exact.offer(request.price)] : []),
      ],
    };
    this.options.observer?.rejected?.(reason);
    return {
      ok: false,
      status: statusOf(reason),
      reason,
      headers: { "payment-required": encodeHeader(body) },
      body,
    };
  }

  /**
   * Decides whether `request` is paid; resolves only after an accepted voucher is durable, or
   * with `early`, once it is verified and queued for the store (then see {@link Payment.durable}).
   */
  async authorize(request: PaidRequest, options: AuthorizeOptions = {}): Promise<GateResult> {
    const started = process.hrtime.bigint();
    if (request.paymentHeader === undefined || request.paymentHeader === "") {
      return this.refuse(request, "payment_required");
    }
    const decoded = decodePaymentSignature(request.paymentHeader);
    if (!decoded.ok) {
      // Not a voucher: an `exact` payment, if offered (the channel path pays nothing for this).
      const exact = decoded.reason === "header_too_large" ? undefined : await this.exact(request);
      return exact ?? this.refuse(request, decoded.reason);
    }
    const v = decoded.voucher;
    if (v.scheme !== SCHEME) return this.refuse(request, "unsupported_scheme");
    if (v.network !== this.network) return this.refuse(request, "wrong_network");
    // The offer's own spelling (what clients echo) is checked first: no lowercase copy on the hot path.
    const t = this.options.terms;
    if (v.contract !== undefined && v.contract !== t.contract && v.contract.toLowerCase() !== this.contract) {
      return this.refuse(request, "wrong_contract");
    }
    if (
      v.asset !== undefined &&
      (this.options.quotes !== undefined || v.asset !== t.asset) &&
      !this.assets.has(v.asset.toLowerCase())
    ) {
      return this.refuse(request, "wrong_token");
    }
    if (v.payTo !== undefined && v.payTo !== t.payee && v.payTo.toLowerCase() !== this.payee) {
      return this.refuse(request, "wrong_payee");
    }

    if (this.options.store.chargeVoucher) return this.chargeShared(request, v, started);
    const engine = this.options.engine;
    const quotes = this.options.quotes;
    let charged: ChannelCharge | undefined;
    // With a quote book the price depends on the channel's token (and the quote sent for it).
    const price = quotes
      ? (record: ChannelRecord) => {
          charged = quotes.charge(request.price, record, v.quote);
          return charged.ok ? charged.amount : charged.reason;
        }
      : request.price;
    let result: CheckResult;
    try {
      // The one call into the engine before the store's write (a channel it does not know yet
      // is looked up once, off this path).
      result = engine.check(v.channelId, v.amount, v.signature, price);
      if (result.kind === "unknown_channel") {
        const checked = await this.checkKnown(request, v, () =>
          engine.check(v.channelId, v.amount, v.signature, price),
        );
        if ("ok" in checked) return checked;
        result = checked;
      }
    } catch {
      // The engine reads the store on a channel's first use after a restart.
      return this.refuse(request, "store_unavailable");
    }
    switch (result.kind) {
      case "unknown_channel":
        return this.refuse(request, "unknown_channel");
      case "rejected":
        return this.refuse(request, result.reason, result.channel);
      case "retry":
        return this.retry(request, v.channelId, v.amount, v.signature);
      case "accepted":
        return this.accept(request, result.ticket, started, options.early === true, charged?.ok ? charged : undefined);
    }
  }

  /** Pays `request` with its `exact` payment; undefined when exact is not offered or the header is no exact payment. */
  private async exact(request: PaidRequest): Promise<GateResult | undefined> {
    const exact = this.options.exact;
    if (!exact || request.paymentHeader === undefined) return undefined;
    let body: unknown;
    try {
      body = decodeHeader<unknown>(request.paymentHeader);
    } catch {
      return undefined;
    }
    const decoded = decodeExactPayment(body);
    if (decoded === undefined) return undefined;
    if (!decoded.ok) return this.refuse(request, decoded.reason);
    const outcome = await exact.pay(decoded.payment, request.price);
    if (!outcome.ok) return this.refuse(request, outcome.reason);
    const response = outcome.response;
    return {
      ok: true,
      scheme: EXACT_SCHEME,
      payer: response.payer,
      retry: false,
      durable: undefined,
      charge: () => undefined,
      responseHeader: () => encodeHeader(response),
      response: () => response,
    };
  }

  /**
   * The path of a store several instances share: the engine checks only what needs the channel's
   * record and the signature, and the store decides the charge under the channel's row lock and
   * commits it with its receipt (see docs/scaling.md). A retry landing on another instance finds
   * the stored voucher there and gets the same receipt.
   */
  private async chargeShared(
    request: PaidRequest,
    v: { channelId: bigint; amount: bigint; signature: Hex },
    started: bigint,
  ): Promise<GateResult> {
    const { engine, store, receipts } = this.options;
    const chargeVoucher = store.chargeVoucher?.bind(store);
    if (!chargeVoucher) return this.refuse(request, "store_unavailable");
    const checked = await this.checkKnown(request, v, () => engine.checkShared(v.channelId, v.amount, v.signature));
    if ("ok" in checked) return checked;
    if (checked.kind === "unknown_channel") return this.refuse(request, "unknown_channel");
    if (checked.kind === "rejected") return this.refuse(request, checked.reason, checked.channel);
    const { record, floor } = checked;

    const reqHash = requestHash(request.method, request.pathAndQuery);
    const issuedAt = Math.floor(Date.now() / 1000);
    const reserved = request.price;
    const signReceipt = (charge: bigint, chargedTotal: bigint): SignedReceipt =>
      receipts.sign({
        channelId: v.channelId,
        voucherAmount: v.amount,
        charge,
        chargedTotal,
        request: reqHash,
        issuedAt,
      });
    let outcome;
    try {
      outcome = await chargeVoucher({
        channelId: v.channelId,
        amount: v.amount,
        signature: v.signature,
        charge: reserved,
        floor,
        acceptedAt: Date.now(),
        sign: (chargedTotal) => JSON.stringify(signReceipt(reserved, chargedTotal)),
      });
    } catch {
      return this.refuse(request, "store_unavailable");
    }
    engine.observeLedger(outcome.ledger);
    switch (outcome.kind) {
      case "stored":
        return this.answerRetry(request, v.channelId, v.amount, v.signature, outcome.voucher);
      case "below_floor":
        return this.refuse(request, "voucher_reused", engine.channelView(v.channelId));
      case "insufficient":
        return this.refuse(request, "insufficient_amount", engine.channelView(v.channelId));
      case "accepted":
        break;
    }
    const accepted = outcome.voucher;
    this.options.observer?.accepted?.(
      {
        channelId: v.channelId,
        amount: v.amount,
        signature: v.signature,
        payer: record.payer,
        charge: reserved,
        chargedTotal: accepted.chargedTotal,
        remaining: record.deposit - accepted.chargedTotal,
      },
      Number(process.hrtime.bigint() - started) / 1e9,
    );
    let receipt = JSON.parse(accepted.receipt) as SignedReceipt;
    let charge = reserved;
    let chargedTotal = accepted.chargedTotal;
    const respond = (): SettleResponse =>
      this.settled(
        record.payer,
        v.channelId,
        v.amount,
        charge,
        chargedTotal,
        record.deposit - chargedTotal,
        {},
        receipt,
      );
    return {
      ok: true,
      scheme: SCHEME,
      channelId: v.channelId,
      amount: v.amount,
      payer: record.payer,
      retry: false,
      durable: undefined,
      charge: (finalCharge: bigint) => {
        if (finalCharge === charge) return;
        if (finalCharge < 0n || finalCharge > reserved) {
          throw new RangeError(`final charge ${finalCharge} outside [0, ${reserved}]`);
        }
        // This request's view of the total: what it was charged, less what it gives back.
        chargedTotal = accepted.chargedTotal - (reserved - finalCharge);
        charge = finalCharge;
        receipt = signReceipt(charge, chargedTotal);
        // As on the single-instance path, the signed receipt is authoritative for the lower
        // charge and the store follows asynchronously (a lost adjustment only overstates it).
        store.adjustCharge(v.channelId, v.amount, charge, chargedTotal, JSON.stringify(receipt)).catch(() => undefined);
      },
      responseHeader: () => encodeHeader(respond()),
      response: respond,
    };
  }

  /**
   * Runs `check`; when the engine does not know the channel, looks it up once (only for a validly
   * signed voucher) and checks again. A refusal found on the way is returned as is.
   */
  private async checkKnown<R extends { readonly kind: string }>(
    request: PaidRequest,
    v: { channelId: bigint; amount: bigint; signature: Hex },
    check: () => R,
  ): Promise<R | Refusal> {
    const result = check();
    if (result.kind !== "unknown_channel" || !this.options.fetchChannel) return result;
    // NOTE: only a validly signed voucher may cost a chain lookup.
    const verdict = this.options.engine.verifySignature(v.channelId, v.amount, v.signature);
    if (verdict !== "ok") return this.refuse(request, verdict);
    const record = await this.fetchChannel(v.channelId);
    if (record && record.payee.toLowerCase() !== this.payee) return this.refuse(request, "wrong_payee");
    if (!record) return result;
    this.options.engine.applyChannel(record);
    return check();
  }

  private async fetchChannel(channelId: bigint): Promise<ChannelRecord | undefined> {
    try {
      return await this.options.fetchChannel?.(channelId);
    } catch {
      return undefined;
    }
  }

  private async accept(
    request: PaidRequest,
    ticket: Ticket,
    started: bigint,
    early: boolean,
    charged: Extract<ChannelCharge, { ok: true }> | undefined,
  ): Promise<GateResult> {
    const bound = charged?.quote && this.options.quotes?.lockForChannel(ticket.channelId, charged.quote);
    const token =
      charged || bound
        ? {
            ...(charged ? { asset: charged.settings.address, rate: charged.rate.toString() } : {}),
            ...(bound ? { quote: bound } : {}),
          }
        : undefined;
    const payment = new AcceptedPayment(
      this.options,
      this.networkJson,
      ticket,
      requestHash(request.method, request.pathAndQuery),
      Math.floor(Date.now() / 1000),
      token,
    );
    const record: AcceptedVoucher = {
      channelId: ticket.channelId,
      amount: ticket.amount,
      signature: ticket.signature,
      charge: ticket.charge,
      chargedTotal: ticket.chargedTotal,
      receipt: payment.receiptJson,
      acceptedAt: Date.now(),
    };
    const key = voucherKey(ticket.channelId, ticket.amount);
    // One continuation after the store's write: the engine's settle, the metrics, and the
    // pending-retry entry's end.
    const settled = this.options.store.recordVoucher(record).then(
      () => this.stored(key, ticket, started, charged),
      () => this.stored(key, ticket, started, undefined, false),
    );
    this.inflight.set(key, { record, settled });
    if (!early) {
      if (!(await settled)) return this.refuse(request, "store_unavailable");
    } else payment.durable = settled;
    return payment;
  }

  /** After the store's write of an accepted ticket: the engine's one call after durability. */
  private stored(
    key: string,
    ticket: Ticket,
    started: bigint,
    charged: Extract<ChannelCharge, { ok: true }> | undefined,
    durable = true,
  ): boolean {
    this.inflight.delete(key);
    this.options.engine.settle(ticket, durable);
    if (durable) {
      const pricedIn = charged && { symbol: charged.settings.symbol, rate: charged.rate };
      this.options.observer?.accepted?.(ticket, Number(process.hrtime.bigint() - started) / 1e9, pricedIn);
    }
    return durable;
  }

  private async retry(request: PaidRequest, channelId: bigint, amount: bigint, signature: Hex): Promise<GateResult> {
    const key = voucherKey(channelId, amount);
    const pending = this.inflight.get(key);
    let original: AcceptedVoucher | undefined;
    if (pending) {
      // The first attempt's write failed and its charge was released: this one may try again.
      if (!(await pending.settled)) return this.refuse(request, "store_unavailable");
      original = pending.record;
    } else {
      try {
        original = this.options.store.findVoucher(channelId, amount);
      } catch {
        return this.refuse(request, "store_unavailable");
      }
    }
    return this.answerRetry(request, channelId, amount, signature, original);
  }

  /** Answers a repeated voucher with its original receipt, or refuses it as a reuse. */
  private answerRetry(
    request: PaidRequest,
    channelId: bigint,
    amount: bigint,
    signature: Hex,
    original: AcceptedVoucher | undefined,
  ): GateResult {
    const view = this.options.engine.channelView(channelId);
    const receipt = retriedReceipt(
      original,
      signature,
      requestHash(request.method, request.pathAndQuery),
      this.retryWindowMs,
    );
    if (original === undefined || receipt === undefined) return this.refuse(request, "voucher_reused", view);
    this.options.observer?.retried?.(channelId, amount);
    const record = this.options.engine.record(channelId);
    const response = this.settled(
      record?.payer ?? ("0x0000000000000000000000000000000000000000" as Address),
      channelId,
      amount,
      original.charge,
      original.chargedTotal,
      view ? BigInt(view.remaining) : 0n,
      this.options.quotes && record ? { asset: record.token } : {},
      receipt,
    );
    return {
      ok: true,
      scheme: SCHEME,
      channelId,
      amount,
      payer: response.payer,
      retry: true,
      durable: undefined,
      charge: () => undefined,
      responseHeader: () => encodeHeader(response),
      response: () => response,
    };
  }

  /** The PAYMENT-RESPONSE of a channel payment: x402's SettleResponse, paychan's figures under `extra`. */
  private settled(
    payer: Address,
    channelId: bigint,
    voucherAmount: bigint,
    charge: bigint,
    chargedTotal: bigint,
    remaining: bigint,
    token: Pick<SettleExtra, "asset" | "rate" | "quote">,
    receipt: SignedReceipt,
  ): SettleResponse {
    return {
      success: true,
      transaction: "",
      network: this.network,
      payer,
      amount: charge.toString(),
      extra: {
        channelId: channelIdHex(channelId),
        voucherAmount: voucherAmount.toString(),
        ...token,
        chargedTotal: chargedTotal.toString(),
        remaining: remaining.toString(),
        receipt,
      },
    };
  }
}

/**
 * A voucher accepted on a channel, as {@link PaymentGate.authorize} hands it out: one object per
 * paid request, its receipt signed once and its PAYMENT-RESPONSE encoded once (again only if an
 * "upto" charge changes them).
 */
class AcceptedPayment implements ChannelPayment {
  readonly ok = true;
  readonly scheme = SCHEME;
  readonly retry = false;
  durable: Promise<boolean> | undefined = undefined;
  /** The signed receipt as stored and sent: JSON. */
  receiptJson: string;
  private receipt: SignedReceipt;
  private currentCharge: bigint;
  private chargedTotal: bigint;
  private header: string | undefined;
  private decoded: SettleResponse | undefined;

  constructor(
    private readonly options: GateOptions,
    private readonly networkJson: string,
    private readonly ticket: Ticket,
    private readonly request: Hex,
    private readonly issuedAt: number,
    /** The token's figures for a request priced in dollars; undefined for the one dollar token. */
    private readonly token: Pick<SettleExtra, "asset" | "rate" | "quote"> | undefined,
  ) {
    this.currentCharge = ticket.charge;
    this.chargedTotal = ticket.chargedTotal;
    this.receipt = this.sign();
    this.receiptJson = receiptJson(this.receipt);
  }

  get channelId(): bigint {
    return this.ticket.channelId;
  }

  get amount(): bigint {
    return this.ticket.amount;
  }

  get payer(): Address {
    return this.ticket.payer;
  }

  charge(finalCharge: bigint): void {
    if (finalCharge === this.currentCharge) return;
    const ticket = this.ticket;
    this.chargedTotal = this.options.engine.settleCharge(ticket, finalCharge, this.currentCharge);
    this.currentCharge = finalCharge;
    this.receipt = this.sign();
    this.receiptJson = receiptJson(this.receipt);
    this.header = undefined;
    this.decoded = undefined;
    // The signed receipt given to the client is authoritative for the lower charge; the store
    // follows asynchronously (a lost adjustment only ever overstates the charge).
    this.options.store
      .adjustCharge(ticket.channelId, ticket.amount, finalCharge, this.chargedTotal, this.receiptJson)
      .catch(() => undefined);
  }

  responseHeader(): string {
    if (this.header === undefined) {
      const t = this.ticket;
      // Exactly JSON.stringify(this.response()) (a test holds them equal), without building the
      // object: every string in it is hex or decimal, except the network, quoted once.
      const json =
        this.token === undefined
          ? `{"success":true,"transaction":"","network":${this.networkJson},"payer":"${t.payer}",` +
            `"amount":"${this.currentCharge}","extra":{"channelId":"${channelIdHex(t.channelId)}",` +
            `"voucherAmount":"${t.amount}","chargedTotal":"${this.chargedTotal}",` +
            `"remaining":"${t.remaining + t.chargedTotal - this.chargedTotal}","receipt":${this.receiptJson}}}`
          : JSON.stringify(this.response());
      this.header = Buffer.from(json, "utf8").toString("base64");
    }
    return this.header;
  }

  response(): SettleResponse {
    const t = this.ticket;
    this.decoded ??= {
      success: true,
      transaction: "",
      network: this.options.terms.network,
      payer: t.payer,
      amount: this.currentCharge.toString(),
      extra: {
        channelId: channelIdHex(t.channelId),
        voucherAmount: t.amount.toString(),
        ...this.token,
        chargedTotal: this.chargedTotal.toString(),
        remaining: (t.remaining + t.chargedTotal - this.chargedTotal).toString(),
        receipt: this.receipt,
      },
    };
    return this.decoded;
  }

  private sign(): SignedReceipt {
    const t = this.ticket;
    return this.options.receipts.sign({
      channelId: t.channelId,
      voucherAmount: t.amount,
      charge: this.currentCharge,
      chargedTotal: this.chargedTotal,
      request: this.request,
      issuedAt: this.issuedAt,
    });
  }
}

/**
 * A receipt from {@link ReceiptSigner.sign} as JSON: exactly `JSON.stringify(receipt)` (a test
 * holds them equal), built without it. Every string of a signed receipt is hex or decimal, so
 * nothing needs escaping.
 */
export function receiptJson(r: SignedReceipt): string {
  return (
    `{"channelId":"${r.channelId}","voucherAmount":"${r.voucherAmount}","charge":"${r.charge}",` +
    `"chargedTotal":"${r.chargedTotal}","request":"${r.request}","issuedAt":${r.issuedAt},` +
    `"signer":"${r.signer}","signature":"${r.signature}"}`
  );
}

/**
 * The receipt of `original` when a voucher sent again is a retry of it, else undefined. A retry
 * must repeat the same voucher (same signature) for the same request (`request`, its hash),
 * within the retry window: anything else would serve a request nobody paid for.
 */
export function retriedReceipt(
  original: AcceptedVoucher | undefined,
  signature: Hex,
  request: Hex,
  retryWindowMs: number,
): SignedReceipt | undefined {
  if (original === undefined || original.signature.toLowerCase() !== signature.toLowerCase()) return undefined;
  if (Date.now() - original.acceptedAt > retryWindowMs) return undefined;
  const receipt = JSON.parse(original.receipt) as SignedReceipt;
  return receipt.request === request ? receipt : undefined;
}

function voucherKey(channelId: bigint, amount: bigint): string {
  return `${channelId.toString(16)}:${amount.toString(16)}`;
}
