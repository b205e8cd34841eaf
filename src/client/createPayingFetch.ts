import { isAddressEqual, type Address } from "viem";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  SCHEME,
  type ChannelOffer,
  type ChannelView,
  type PaymentRequired,
  type PaymentResponse,
} from "../protocol/headers";
import { requestHash, verifyReceipt, type SignedReceipt } from "../protocol/receipt";
import { signerOfChannel, voucherDomain, voucherTypedData } from "../protocol/voucher";
import { AUTO_TOP_UP_DEFAULTS, AutoTopUp, type AutoTopUpOptions, type TopUpTarget } from "./autoTopUp";
import { PaymentLimitError, ReceiptError } from "./errors";
import type { FundingResult } from "./openChannel";
import { channelKey, memoryStateStore, offerKey, type ChannelState, type ClientStateStore } from "./stateStore";
import { chainIdOf, type TypedDataSigner } from "./terms";

/**
 * `createPayingFetch` wraps `fetch` so that priced resources are paid transparently through a
 * payment channel (x402 v2, scheme "channel"; docs/protocol.md):
 *
 * 1. the request is sent; a 402 carries PAYMENT-REQUIRED with the `channel` offer;
 * 2. spend limits are checked **before** anything is signed ({@link PaymentLimitError});
 * 3. the next voucher amount follows the concurrency rule
 *    `next = max(signedMax + 1, chargedKnown + inFlight + price)`, is recorded durably, signed by
 *    the session key and sent in PAYMENT-SIGNATURE;
 * 4. the PAYMENT-RESPONSE receipt is verified offline against `extra.receiptSigner`;
 * 5. a corrective 402 carrying the server's `channel` view (`insufficient_amount`,
 *    `voucher_reused`) resynchronizes the state and the request is retried once; a 503
 *    `store_unavailable` (nothing charged) is answered by resending the same voucher, twice at most.
 *
 * After the first 402 of a route (method + origin + path) its offer is remembered, and later
 * requests to it are paid directly, without the unpaid round trip.
 *
 * With `autoTopUp` (and `maxTopUpTotal`), a channel running low is topped up automatically: when a
 * paid answer leaves less than `autoTopUp.below` of headroom, the answer is returned once the
 * top-up is done; when a voucher is refused with `amount_exceeds_deposit`, the request is topped
 * up and retried. One top-up per channel at a time (concurrent requests share it); top-ups are
 * not spending (`maxTotal`), they are capped by `maxTopUpTotal`.
 */

/** What one paid request cost, attached to its response as `response.payment`. */
export interface PaymentInfo {
  readonly channelId: bigint;
  readonly network: string;
  /** The cumulative voucher amount the request was paid with. */
  readonly amount: bigint;
  /** What the request was charged (≤ the price; less on an "upto" route). */
  readonly charge: bigint;
  /** The channel's charged total reported with the answer. */
  readonly chargedTotal: bigint;
  readonly receipt: SignedReceipt;
  /** Whether the receipt verified (only ever false with `receiptPolicy: "flag"`). */
  readonly receiptValid: boolean;
  /** Why the receipt failed, when it did. */
  readonly receiptProblem?: string;
  /** Whether the request was paid after a resynchronization from a corrective 402. */
  readonly resynced: boolean;
  /** The automatic top-up this answer triggered (threshold crossed), once done. */
  readonly topUp?: FundingResult;
  /** Why that automatic top-up failed (the request itself was paid). */
  readonly topUpError?: unknown;
}

/** A response; `payment` is set when the request was paid. */
export type PaidResponse = Response & { readonly payment?: PaymentInfo };

/**
 * Chooses (or opens) the channel that pays an offer. Called at most once per offer terms
 * (network, contract, payee, token) and instance; the answer is stored, so a restarted client
 * with the same store reuses it without calling again.
 */
export type ChannelResolver = (offer: ChannelOffer, resourceUrl: string) => Promise<bigint>;

/** Options of {@link createPayingFetch}. */
export interface PayingFetchOptions {
  /** Signs vouchers: the channel's signer (normally a generated session key, not the funding wallet). */
  readonly sessionAccount: TypedDataSigner;
  /** A fixed channel id, or a resolver that looks one up or opens one (e.g. gaslessly). */
  readonly channel: bigint | ChannelResolver;
  /** Largest price paid for one request, atomic units. */
  readonly maxPerRequest: bigint;
  /** Largest total this instance pays (charged plus reserved for requests in flight), atomic units. */
  readonly maxTotal: bigint;
  /** Where signedMax / chargedKnown / receipts live. Default: in memory. Use `fileStateStore` to survive restarts. */
  readonly store?: ClientStateStore;
  /** Only pay offers on this CAIP-2 network. */
  readonly network?: string;
  /** Only pay offers naming this PaymentChannels contract. */
  readonly contract?: Address;
  /** What to do with an invalid receipt: throw a {@link ReceiptError} (default) or flag it in `payment`. */
  readonly receiptPolicy?: "throw" | "flag";
  /** Called after each paid response. */
  readonly onPayment?: (payment: PaymentInfo, response: Response) => void;
  /** Top channels up automatically when they run low; requires {@link maxTopUpTotal}. See autoTopUp.ts. */
  readonly autoTopUp?: AutoTopUpOptions;
  /** Largest sum this instance adds to channels by automatic top-ups, atomic units (not counted in maxTotal). */
  readonly maxTopUpTotal?: bigint;
}

/** The paying fetch: call it like `fetch`. */
export interface PayingFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<PaidResponse>;
  /** Charged so far by this instance, atomic units. */
  readonly spent: bigint;
  /** Prices of this instance's requests in flight, atomic units. */
  readonly reserved: bigint;
  /** Added to channels by automatic top-ups so far (including one in flight), atomic units. */
  readonly toppedUp: bigint;
  /** The persisted state of a channel, if known. */
  channelState(channelId: bigint): Readonly<ChannelState> | undefined;
}

/**
 * Group commit for the state file: every save asked for during one turn of the event loop is
 * written once, so a burst of concurrent requests costs one atomic write (and fsync), not one each.
 */
class GroupSaver {
  private pending: Promise<void> | undefined;

  constructor(private readonly store: ClientStateStore) {}

  /** Resolves once the state as it is at the end of this turn is durable. */
  save(): Promise<void> {
    this.pending ??= new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        this.pending = undefined;
        try {
          this.store.save();
          resolve();
        } catch (error) {
          reject(error);
        }
      }),
    );
    return this.pending;
  }
}

/** Per-channel live numbers; `state` is the persisted mirror. */
class ChannelSlot implements TopUpTarget {
  signedMax: bigint;
  chargedKnown: bigint;
  inFlight = 0n;
  deposit: bigint | undefined = undefined;
  topUp: Promise<FundingResult> | undefined = undefined;
  failedAt: number | undefined = undefined;

  constructor(
    readonly channelId: bigint,
    readonly state: ChannelState,
    private readonly saver: GroupSaver,
  ) {
    this.signedMax = BigInt(state.signedMax);
    this.chargedKnown = BigInt(state.chargedKnown);
  }

  /**
   * Picks the next amount (docs/protocol.md, Concurrency) and reserves `price`. The caller must
   * await {@link persist} before sending the voucher, so a restart never signs the amount again.
   */
  reserve(price: bigint): bigint {
    const byCharge = this.chargedKnown + this.inFlight + price;
    const next = byCharge > this.signedMax ? byCharge : this.signedMax + 1n;
    this.signedMax = next;
    this.inFlight += price;
    this.mirror();
    return next;
  }

  /** The answer to a request reserving `price` arrived (paid or not). */
  release(price: bigint, chargedTotal?: bigint): void {
    this.inFlight -= price;
    if (chargedTotal !== undefined && chargedTotal > this.chargedKnown) this.chargedKnown = chargedTotal;
  }

  /** Adopts the server's view from a corrective 402 (docs/protocol.md, Resynchronization). */
  resync(view: ChannelView): void {
    const highest = BigInt(view.highestAmount);
    if (highest > this.signedMax) this.signedMax = highest;
    this.chargedKnown = BigInt(view.chargedTotal);
    this.mirror();
  }

  /** Copies the live numbers into the persisted state object. */
  mirror(): void {
    this.state.signedMax = this.signedMax.toString();
    this.state.chargedKnown = this.chargedKnown.toString();
  }

  /** Makes the current numbers durable (group commit). */
  persist(): Promise<void> {
    this.mirror();
    return this.saver.save();
  }
}

/** Resends of the same voucher after a `store_unavailable` (503) answer, and the base delay between them. */
const STORE_RETRIES = 2;
const STORE_RETRY_DELAY_MS = 250;

/** A request body that can be sent more than once. */
interface ReplayableRequest {
  readonly url: string;
  readonly method: string;
  readonly headers: Headers;
  readonly init: RequestInit;
}

async function normalize(input: string | URL | Request, init: RequestInit | undefined): Promise<ReplayableRequest> {
  if (input instanceof Request) {
    const body = input.body ? await input.arrayBuffer() : undefined;
    const headers = new Headers(input.headers);
    if (init?.headers) new Headers(init.headers).forEach((value, key) => headers.set(key, value));
    const method = (init?.method ?? input.method).toUpperCase();
    return { url: input.url, method, headers, init: { ...init, method, body: init?.body ?? body } };
  }
  if (init?.body instanceof ReadableStream) {
    throw new TypeError(
      "createPayingFetch: a streamed request body cannot be resent after a 402; pass a buffer or string",
    );
  }
  const method = (init?.method ?? "GET").toUpperCase();
  return { url: input.toString(), method, headers: new Headers(init?.headers), init: { ...init, method } };
}

function decodeRequired(response: Response): PaymentRequired | undefined {
  const header = response.headers.get(PAYMENT_REQUIRED_HEADER);
  if (!header) return undefined;
  try {
    return decodeHeader<PaymentRequired>(header);
  } catch {
    return undefined;
  }
}

async function drain(response: Response): Promise<void> {
  try {
    await response.arrayBuffer();
  } catch {
    // Nothing to reuse.
  }
}

function attach(response: Response, payment: PaymentInfo | undefined): PaidResponse {
  if (payment) Object.defineProperty(response, "payment", { value: payment, enumerable: true });
  return response as PaidResponse;
}

/** Wraps `fetchImpl` so that 402 answers are paid through a channel; see the module comment. */
export function createPayingFetch(fetchImpl: typeof fetch, options: PayingFetchOptions): PayingFetch {
  if (options.autoTopUp && options.maxTopUpTotal === undefined) {
    throw new TypeError("createPayingFetch: autoTopUp needs maxTopUpTotal (the most it may add to channels)");
  }
  const autoTopUp = options.autoTopUp ? new AutoTopUp(options.autoTopUp, options.maxTopUpTotal ?? 0n) : undefined;
  const store = options.store ?? memoryStateStore();
  const state = store.load();
  const saver = new GroupSaver(store);
  /**
   * Saves bookkeeping (charged totals, receipts) before the caller sees the answer, so a client
   * restarted right after it resumes without a resync; a failed save only loses what a resync restores.
   */
  const saveQuietly = (slot: ChannelSlot): Promise<void> => slot.persist().catch(() => undefined);
  const offers = new Map<string, ChannelOffer>();
  const slots = new Map<string, ChannelSlot>();
  const resolving = new Map<string, Promise<bigint>>();
  let spent = 0n;
  let reserved = 0n;

  const pick = (required: PaymentRequired): ChannelOffer | undefined =>
    required.accepts?.find(
      (o) =>
        o.scheme === SCHEME &&
        (options.network === undefined || o.network === options.network) &&
        (options.contract === undefined || isAddressEqual(o.extra.contract, options.contract)),
    );

  const routeKey = (request: ReplayableRequest): string => {
    const url = new URL(request.url);
    return `${request.method} ${url.origin}${url.pathname}`;
  };

  async function channelIdFor(offer: ChannelOffer, resourceUrl: string): Promise<bigint> {
    if (typeof options.channel === "bigint") return options.channel;
    const key = offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset);
    const known = state.offers[key];
    if (known !== undefined) return BigInt(known);
    const resolver = options.channel;
    let pending = resolving.get(key);
    if (!pending) {
      pending = resolver(offer, resourceUrl).then((id) => {
        state.offers[key] = channelIdHex(id);
        store.save();
        return id;
      });
      pending.catch(() => resolving.delete(key));
      resolving.set(key, pending);
    }
    return pending;
  }

  async function slotFor(offer: ChannelOffer, resourceUrl: string): Promise<ChannelSlot> {
    const channelId = await channelIdFor(offer, resourceUrl);
    const key = channelKey(offer.network, offer.extra.contract, channelId);
    let slot = slots.get(key);
    if (!slot) {
      if (!isAddressEqual(signerOfChannel(channelId), options.sessionAccount.address)) {
        throw new Error(
          `channel ${channelIdHex(channelId)} is signed by ${signerOfChannel(channelId)}, not by the session account ${options.sessionAccount.address}`,
        );
      }
      const persisted = (state.channels[key] ??= {
        channelId: channelIdHex(channelId),
        signedMax: "0",
        chargedKnown: "0",
        receipts: 0,
      });
      slot = new ChannelSlot(channelId, persisted, saver);
      slots.set(key, slot);
    }
    return slot;
  }

  function checkLimits(price: bigint, url: string): void {
    if (price > options.maxPerRequest) {
      throw new PaymentLimitError("maxPerRequest", price, options.maxPerRequest, spent + reserved, url);
    }
    if (spent + reserved + price > options.maxTotal) {
      throw new PaymentLimitError("maxTotal", price, options.maxTotal, spent + reserved, url);
    }
  }

  /** Checks a paid answer's receipt; returns undefined when it is valid, else the problem. */
  async function receiptProblem(
    paid: PaymentResponse,
    offer: ChannelOffer,
    request: ReplayableRequest,
    channelId: bigint,
    amount: bigint,
    price: bigint,
  ): Promise<string | undefined> {
    const r = paid.receipt;
    if (!r || typeof r !== "object") return "PAYMENT-RESPONSE carries no receipt";
    const ok = await verifyReceipt(r, offer.extra.receiptSigner, chainIdOf(offer.network), offer.extra.contract);
    if (!ok) return `receipt not signed by the offered receiptSigner ${offer.extra.receiptSigner}`;
    if (BigInt(r.channelId) !== channelId) return "receipt names another channel";
    if (BigInt(r.voucherAmount) !== amount) return `receipt is for voucher ${r.voucherAmount}, not ${amount}`;
    const url = new URL(request.url);
    if (r.request !== requestHash(request.method, url.pathname + url.search)) return "receipt is for another request";
    if (BigInt(r.charge) > price) return `receipt charges ${r.charge}, above the price ${price}`;
    if (r.charge !== paid.charge || r.chargedTotal !== paid.chargedTotal) {
      return "PAYMENT-RESPONSE disagrees with its receipt";
    }
    return undefined;
  }

  /**
   * A voucher refused with `amount_exceeds_deposit` (nothing charged, nothing recorded): tops the
   * channel up unless a known top-up already covers the amount, then resends the same voucher
   * until the server has seen the new deposit (or `autoTopUp.waitMs` passes). Resending the
   * identical voucher, not a new amount, keeps amounts from climbing past the new deposit.
   */
  async function topUpAndResend(
    response: Response,
    slot: ChannelSlot,
    offer: ChannelOffer,
    url: string,
    amount: bigint,
    resend: () => Promise<Response>,
  ): Promise<Response> {
    const deadline = Date.now() + (options.autoTopUp?.waitMs ?? AUTO_TOP_UP_DEFAULTS.waitMs);
    for (let waits = 0; ; waits++) {
      if (response.status !== 402) return response;
      const view = decodeRequired(response)?.channel;
      if (decodeRequired(response)?.error !== "amount_exceeds_deposit" || !view) return response;
      if (BigInt(view.channelId) !== slot.channelId) return response;
      autoTopUp!.observe(slot, BigInt(view.deposit));
      if (slot.deposit === undefined || slot.deposit < amount) {
        await drain(response);
        await autoTopUp!.run(slot, offer, url, "amount_exceeds_deposit");
      } else if (Date.now() > deadline) {
        return response;
      } else {
        await drain(response);
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** waits, 2_000)));
      }
      if (slot.deposit === undefined || slot.deposit < amount) return resend(); // the top-up did not cover it
      response = await resend();
    }
  }

  async function payingFetch(input: string | URL | Request, init?: RequestInit): Promise<PaidResponse> {
    const request = await normalize(input, init);
    const send = (header?: string) => {
      const headers = new Headers(request.headers);
      if (header) headers.set(PAYMENT_SIGNATURE_HEADER, header);
      return fetchImpl(request.url, { ...request.init, headers });
    };

    const route = routeKey(request);
    let offer = offers.get(route);
    if (!offer) {
      const first = await send();
      if (first.status !== 402) return first;
      const required = decodeRequired(first);
      offer = required && pick(required);
      if (!offer) return first;
      offers.set(route, offer);
      await drain(first);
    }

    let resynced = false;
    let attempt = 0;
    for (;;) {
      const price = BigInt(offer.amount);
      checkLimits(price, request.url);
      reserved += price;
      let slot: ChannelSlot;
      try {
        slot = await slotFor(offer, request.url);
      } catch (error) {
        reserved -= price;
        throw error;
      }
      const amount = slot.reserve(price);
      let response: Response;
      try {
        await slot.persist();
        const signature = await options.sessionAccount.signTypedData(
          voucherTypedData(voucherDomain(chainIdOf(offer.network), offer.extra.contract), {
            channelId: slot.channelId,
            cumulativeAmount: amount,
          }),
        );
        const header = encodePaymentSignature(offer, {
          channelId: channelIdHex(slot.channelId),
          amount: amount.toString(),
          signature,
        });
        response = await send(header);
        // store_unavailable: nothing was charged and the same voucher may be resent (docs/protocol.md).
        for (let retry = 0; retry < STORE_RETRIES && response.status === 503; retry++) {
          if (decodeRequired(response)?.error !== "store_unavailable") break;
          await drain(response);
          await new Promise((resolve) => setTimeout(resolve, STORE_RETRY_DELAY_MS * (retry + 1)));
          response = await send(header);
        }
        if (autoTopUp) response = await topUpAndResend(response, slot, offer, request.url, amount, () => send(header));
      } catch (error) {
        slot.release(price);
        reserved -= price;
        throw error;
      }

      const paidHeader = response.headers.get(PAYMENT_RESPONSE_HEADER);
      if (paidHeader && response.status < 400) {
        let paid: PaymentResponse | undefined;
        let problem: string | undefined;
        try {
          paid = decodeHeader<PaymentResponse>(paidHeader);
          problem = await receiptProblem(paid, offer, request, slot.channelId, amount, price);
        } catch (error) {
          problem = `unreadable PAYMENT-RESPONSE: ${(error as Error).message}`;
        }
        reserved -= price;
        if (problem !== undefined || !paid) {
          // Not trusted: the charged total it claims is not adopted; the full price counts as spent.
          slot.release(price);
          spent += price;
          await saveQuietly(slot);
          if ((options.receiptPolicy ?? "throw") === "throw") {
            throw new ReceiptError(`invalid payment receipt from ${request.url}: ${problem}`, response);
          }
          const flagged: PaymentInfo = {
            channelId: slot.channelId,
            network: offer.network,
            amount,
            charge: price,
            chargedTotal: slot.chargedKnown,
            receipt: (paid?.receipt ?? {}) as SignedReceipt,
            receiptValid: false,
            receiptProblem: problem,
            resynced,
          };
          options.onPayment?.(flagged, response);
          return attach(response, flagged);
        }
        const charge = BigInt(paid.charge);
        const chargedTotal = BigInt(paid.chargedTotal);
        slot.release(price, chargedTotal);
        spent += charge;
        slot.state.receipts += 1;
        slot.state.lastReceipt = paid.receipt;
        await saveQuietly(slot);
        let topUp: FundingResult | undefined;
        let topUpError: unknown;
        if (autoTopUp && /^\d+$/.test(String(paid.remaining))) {
          autoTopUp.observe(slot, BigInt(paid.remaining) + chargedTotal);
          if (autoTopUp.wants(slot, slot.signedMax > slot.chargedKnown ? slot.signedMax : slot.chargedKnown)) {
            try {
              topUp = await autoTopUp.run(slot, offer, request.url, "below");
            } catch (error) {
              topUpError = error;
              options.autoTopUp?.onError?.(error, slot.channelId);
            }
          }
        }
        const payment: PaymentInfo = {
          channelId: slot.channelId,
          network: offer.network,
          amount,
          charge,
          chargedTotal,
          receipt: paid.receipt,
          receiptValid: true,
          resynced,
          ...(topUp ? { topUp } : {}),
          ...(topUpError !== undefined ? { topUpError } : {}),
        };
        options.onPayment?.(payment, response);
        return attach(response, payment);
      }

      // Not paid: nothing was charged for this voucher.
      slot.release(price);
      reserved -= price;
      const required = decodeRequired(response);
      if (!required) return response;
      const view = required.channel;
      if (view && BigInt(view.channelId) === slot.channelId) {
        slot.resync(view);
        await saveQuietly(slot);
      }
      const fresh = pick(required);
      if (fresh) offers.set(route, fresh);
      const corrective = required.error === "insufficient_amount" || required.error === "voucher_reused";
      // A 402 without error after paying means the price or terms changed: try the fresh offer once.
      const changed = required.error === undefined && fresh !== undefined;
      if (attempt > 0 || (!(corrective && view) && !changed)) return response;
      resynced = corrective;
      offer = fresh ?? offer;
      await drain(response);
      attempt++;
    }
  }

  return Object.defineProperties(payingFetch, {
    spent: { get: () => spent },
    reserved: { get: () => reserved },
    toppedUp: { get: () => autoTopUp?.toppedUp ?? 0n },
    channelState: {
      value: (channelId: bigint) =>
        Object.values(state.channels).find((c) => BigInt(c.channelId) === channelId) as
          Readonly<ChannelState> | undefined,
    },
  }) as PayingFetch;
}
