import { isAddressEqual, type Address, type Hex } from "viem";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  offerTerms,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  SCHEME,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../protocol/headers";
import type { SignedReceipt } from "../protocol/receipt";
import { MAX_AMOUNT, voucherDomain, voucherTypedData } from "../protocol/voucher";
import { AUTO_TOP_UP_DEFAULTS, AutoTopUp, type AutoTopUpOptions } from "./autoTopUp";
import { receiptProblem } from "./checkReceipt";
import { InsufficientDepositError, PaymentLimitError, ReceiptError } from "./errors";
import type { FundingResult } from "./openChannel";
import { memoryStateStore, offerKey, type ChannelState, type ClientStateStore } from "./stateStore";
import { chainIdOf, type TypedDataSigner } from "./terms";
import { ChannelBook, requotes, type ChannelSlot, viewOf } from "./trackChannel";
import { STREAM_HEADER, type StreamReceipt, type VoucherRequest } from "../protocol/stream";
import {
  consumeMeteredStream,
  type BlockOutcome,
  type BlockPayer,
  type MeteredStreamInfo,
} from "./consumeMeteredStream";
import { PaidWebSocket } from "./openPaidWebSocket";

/**
 * `createPayingFetch` wraps `fetch` so that priced resources are paid transparently through a
 * payment channel (x402 v2, scheme "channel"; docs/protocol.md):
 *
 * 1. the request is sent; a 402 carries PAYMENT-REQUIRED with the `channel` offer;
 * 2. spend limits are checked **before** anything is signed ({@link PaymentLimitError});
 * 3. the next voucher amount follows the concurrency rule
 *    `next = max(signedMax + 1, chargedKnown + inFlight + price)`; it is never above the channel's
 *    deposit as last known ({@link InsufficientDepositError}, nothing signed); it is recorded
 *    durably, signed by the session key and sent in PAYMENT-SIGNATURE;
 * 4. the PAYMENT-RESPONSE receipt is verified offline against `extra.receiptSigner`;
 * 5. a 402 carrying the server's channel view (`extra.channelState`) resynchronizes the state: a
 *    refused voucher is not used, so `signedMax` comes back to what the server holds (plus what is
 *    still in flight), and a corrective refusal (`insufficient_amount`, `voucher_reused`, or
 *    `amount_exceeds_deposit` caused by amounts signed earlier) is retried once; a 503
 *    `store_unavailable` (nothing charged) is answered by resending the same voucher, twice at most;
 * 6. a server pricing in dollars offers one entry per token ({@link PayingFetchOptions.asset}
 *    picks one); a quoted token's offer carries a signed quote, echoed with the voucher, and a
 *    `quote_expired` refusal (which carries a fresh quote) is paid again once under the new quote,
 *    so the request is not lost.
 *
 * The deposit is learned from the channel's opening (a resolver returning `openChannel`'s result),
 * every paid answer (`remaining + chargedTotal`), every 402 view and every top-up, and kept in the
 * state. When it looks too small for a request, the server is asked for its view first with an
 * unsigned probe (amount 2^96 − 1 and a placeholder signature no key made: the server answers
 * `amount_exceeds_deposit` with its view before it looks at the signature), so a top-up made
 * elsewhere is seen; only then is the request refused, or topped up with `autoTopUp`.
 *
 * After the first 402 of a route (method + origin + path) its offer is remembered, and later
 * requests to it are paid directly, without the unpaid round trip.
 *
 * With `autoTopUp` (and `maxTopUpTotal`), a channel running low is topped up automatically: when a
 * paid answer leaves less than `autoTopUp.below` of headroom, the answer is returned once the
 * top-up is done; when a request would exceed the deposit, the channel is topped up before its
 * voucher is signed, and a voucher the server refuses because it has not seen the new deposit
 * yet is resent unchanged. One top-up per channel at a time (concurrent requests share it);
 * top-ups are not spending (`maxTotal`), they are capped by `maxTopUpTotal`.
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
  /** The token paid in, as the server reported it (servers pricing in dollars do). */
  readonly asset?: Address;
  /** Dollars per whole token the request was charged at (18 decimals), as the server reported it. */
  readonly rate?: bigint;
  /** Whether the request was paid again under a fresh quote after its quote expired. */
  readonly requoted?: boolean;
  /** The automatic top-up this answer triggered (threshold crossed), once done. */
  readonly topUp?: FundingResult;
  /** Why that automatic top-up failed (the request itself was paid). */
  readonly topUpError?: unknown;
}

/**
 * A response; `payment` is set when the request was paid (for a metered stream, by its first
 * block), `stream` when it is a metered stream (docs/protocol.md#metered-streams).
 */
export type PaidResponse = Response & { readonly payment?: PaymentInfo; readonly stream?: MeteredStreamInfo };

/**
 * Chooses (or opens) the channel that pays an offer. Called at most once per offer terms
 * (network, contract, payee, token) and instance; the answer is stored, so a restarted client
 * with the same store reuses it without calling again. It may answer the channel id, or an object
 * with the id and the deposit (`openChannel`'s result fits), which then bounds the first voucher.
 */
export type ChannelResolver = (
  offer: ChannelOffer,
  resourceUrl: string,
) => Promise<bigint | { readonly channelId: bigint; readonly deposit?: bigint }>;

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
  /**
   * Largest sum paid for one metered stream (its blocks), atomic units; default no cap but
   * `maxTotal`. Each block's price counts against `maxPerRequest` as a request's would. Past it no
   * more block is paid: the server pauses the stream, then ends it with its receipt.
   */
  readonly maxPerStream?: bigint;
  /** Where signedMax / chargedKnown / receipts live. Default: in memory. Use `fileStateStore` to survive restarts. */
  readonly store?: ClientStateStore;
  /** Only pay offers on this CAIP-2 network. */
  readonly network?: string;
  /** Only pay offers naming this PaymentChannels contract. */
  readonly contract?: Address;
  /**
   * Only pay offers in this token (a server pricing in dollars may offer several, e.g. USDC and
   * EURC). Default: the first channel offer. An offer in a token the server quotes carries its
   * quote in `extra.quote`, echoed with each voucher; when the quote expires the request is paid
   * again under the fresh quote of the refusal.
   */
  readonly asset?: Address;
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
  /**
   * Opens a metered WebSocket (`ws://` or `wss://`; its route's 402 is read over HTTP at the
   * same path), paying its first block in the upgrade and later blocks in the socket.
   */
  openWebSocket(url: string): Promise<PaidWebSocket>;
}

/**
 * The signature of a deposit probe: well formed (r = s = 1, v = 27), but made by no key, so the
 * probe can never pay for anything.
 */
const PROBE_SIGNATURE: Hex = `0x${"0".repeat(63)}1${"0".repeat(63)}11b`;

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
  const book = new ChannelBook(options.store ?? memoryStateStore(), options.sessionAccount.address);
  /**
   * Saves bookkeeping (charged totals, receipts) before the caller sees the answer, so a client
   * restarted right after it resumes without a resync; a failed save only loses what a resync restores.
   */
  const saveQuietly = (slot: ChannelSlot): Promise<void> => slot.persist().catch(() => undefined);
  const offers = new Map<string, ChannelOffer>();
  const resolving = new Map<string, Promise<bigint>>();
  let spent = 0n;
  let reserved = 0n;

  /** The channel offer to pay, without the refusal's channel view (it is remembered per route). */
  const pick = (required: PaymentRequired): ChannelOffer | undefined => {
    const offer = required.accepts?.find(
      (o) =>
        o.scheme === SCHEME &&
        (options.network === undefined || o.network === options.network) &&
        (options.contract === undefined || isAddressEqual(o.extra.contract, options.contract)) &&
        (options.asset === undefined || isAddressEqual(o.asset, options.asset)),
    );
    return offer && offerTerms(offer);
  };

  const routeKey = (request: ReplayableRequest): string => {
    const url = new URL(request.url);
    return `${request.method} ${url.origin}${url.pathname}`;
  };

  async function channelIdFor(offer: ChannelOffer, resourceUrl: string): Promise<bigint> {
    if (typeof options.channel === "bigint") return options.channel;
    const known = book.known(offer);
    if (known !== undefined) return known;
    const key = offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset);
    const resolver = options.channel;
    let pending = resolving.get(key);
    if (!pending) {
      pending = resolver(offer, resourceUrl).then((resolved) => {
        if (typeof resolved === "bigint") {
          book.remember(offer, resolved);
          return resolved;
        }
        book.remember(offer, resolved.channelId, resolved.deposit);
        return resolved.channelId;
      });
      pending.catch(() => resolving.delete(key));
      resolving.set(key, pending);
    }
    return pending;
  }

  async function slotFor(offer: ChannelOffer, resourceUrl: string): Promise<ChannelSlot> {
    return book.slot(offer, await channelIdFor(offer, resourceUrl));
  }

  function checkLimits(price: bigint, url: string): void {
    if (price > options.maxPerRequest) {
      throw new PaymentLimitError("maxPerRequest", price, options.maxPerRequest, spent + reserved, url);
    }
    if (spent + reserved + price > options.maxTotal) {
      throw new PaymentLimitError("maxTotal", price, options.maxTotal, spent + reserved, url);
    }
  }

  /**
   * Asks the server for its view of the channel without signing anything: a voucher for 2^96 − 1
   * with {@link PROBE_SIGNATURE} is refused `amount_exceeds_deposit` (with the view) before its
   * signature is looked at (docs/protocol.md, Resynchronization). One probe per channel at a time.
   */
  function probeDeposit(slot: ChannelSlot, offer: ChannelOffer, send: (header: string) => Promise<Response>) {
    slot.probe ??= (async () => {
      try {
        const response = await send(
          encodePaymentSignature(offer, {
            channelId: channelIdHex(slot.channelId),
            amount: MAX_AMOUNT.toString(),
            signature: PROBE_SIGNATURE,
          }),
        );
        const view = viewOf(decodeRequired(response), slot.channelId);
        await drain(response);
        if (view) {
          slot.resync(view);
          await saveQuietly(slot);
        }
      } finally {
        slot.probe = undefined;
      }
    })();
    return slot.probe;
  }

  /**
   * Reserves the next amount for `price` within the channel's deposit. When the known deposit is
   * too small, the server's view is asked for first (unless `viewIsFresh`: it may know a top-up
   * this client does not), then, with autoTopUp, the channel is topped up until it covers the
   * price (within maxTopUpTotal). Throws {@link InsufficientDepositError} when it still cannot.
   */
  async function reserveWithin(
    slot: ChannelSlot,
    price: bigint,
    offer: ChannelOffer,
    url: string,
    send: (header: string) => Promise<Response>,
    viewIsFresh: boolean,
  ): Promise<bigint> {
    let amount = slot.reserve(price);
    if (amount !== undefined) return amount;
    if (!viewIsFresh) {
      await probeDeposit(slot, offer, send);
      amount = slot.reserve(price);
    }
    while (amount === undefined && autoTopUp) {
      const before = slot.deposit;
      await autoTopUp.run(slot, offer, url, "amount_exceeds_deposit");
      amount = slot.reserve(price);
      if (slot.deposit === before) break;
    }
    if (amount === undefined) {
      throw new InsufficientDepositError(slot.channelId, offer, price, slot.deposit ?? 0n, slot.available(), url);
    }
    return amount;
  }

  /**
   * A voucher within the deposit this client knows, refused with `amount_exceeds_deposit`: the
   * server has not seen the latest top-up yet (it waits for its confirmations). The identical
   * voucher is resent until it has (or `autoTopUp.waitMs` passes); resending it, not a new
   * amount, keeps amounts from climbing past the new deposit.
   */
  async function resendUntilSeen(
    response: Response,
    slot: ChannelSlot,
    amount: bigint,
    resend: () => Promise<Response>,
  ): Promise<Response> {
    const deadline = Date.now() + (options.autoTopUp?.waitMs ?? AUTO_TOP_UP_DEFAULTS.waitMs);
    for (let waits = 0; ; waits++) {
      if (response.status !== 402) return response;
      const required = decodeRequired(response);
      const view = viewOf(required, slot.channelId);
      if (required?.error !== "amount_exceeds_deposit" || !view) return response;
      slot.learnDeposit(BigInt(view.deposit));
      if (slot.deposit === undefined || slot.deposit < amount || Date.now() > deadline) return response;
      await drain(response);
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** waits, 2_000)));
      response = await resend();
    }
  }

  /** Records `amount` as signed (durably), signs it with the session key and encodes PAYMENT-SIGNATURE. */
  async function signVoucher(
    slot: ChannelSlot,
    amount: bigint,
    offer: ChannelOffer,
    paying: ChannelOffer,
    url: string,
  ): Promise<string> {
    await slot.persist();
    const signature = await options.sessionAccount.signTypedData(
      voucherTypedData(voucherDomain(chainIdOf(offer.network), offer.extra.contract), {
        channelId: slot.channelId,
        cumulativeAmount: amount,
      }),
    );
    return encodePaymentSignature(
      paying,
      { channelId: channelIdHex(slot.channelId), amount: amount.toString(), signature },
      { url },
    );
  }

  /**
   * Pays the later blocks of a metered stream: each voucher is reserved, signed and recorded as
   * a request's would be, and POSTed to the stream's URL with `paychan-stream` (one corrective
   * resynchronization, as for requests); the final receipt is checked block by block, and what
   * the last blocks were charged by use is given back to `spent`.
   */
  function blockPayer(
    offer: ChannelOffer,
    paying: ChannelOffer,
    blockPrice: bigint,
    firstCharge: bigint | undefined,
    request: ReplayableRequest,
    probe: (header: string) => Promise<Response>,
    deliver: (header: string, streamId: string) => Promise<BlockOutcome>,
  ): BlockPayer {
    // What this client counted as spent for each block, by voucher amount.
    const counted = new Map<bigint, bigint>();
    let streamSpent = firstCharge ?? 0n;
    const inFlight = new Set<Promise<unknown>>();
    const pay = async (need: VoucherRequest) => {
      const price = BigInt(need.amount);
      if (price !== blockPrice) throw new Error(`the stream asks ${price} a block, its offer said ${blockPrice}`);
      if (options.maxPerStream !== undefined && streamSpent + price > options.maxPerStream) {
        throw new PaymentLimitError("maxPerStream", price, options.maxPerStream, streamSpent, request.url);
      }
      for (let attempt = 0; ; attempt++) {
        checkLimits(price, request.url);
        reserved += price;
        let slot: ChannelSlot;
        let amount: bigint;
        try {
          slot = await slotFor(offer, request.url);
          amount = await reserveWithin(slot, price, paying, request.url, probe, false);
        } catch (error) {
          reserved -= price;
          throw error;
        }
        let outcome: BlockOutcome;
        try {
          const header = await signVoucher(slot, amount, offer, paying, request.url);
          outcome = await deliver(header, need.streamId);
        } catch (error) {
          slot.lose(price, amount);
          reserved -= price;
          throw error;
        }
        reserved -= price;
        if ("paid" in outcome) {
          const paid = outcome.paid;
          const problem = await receiptProblem(paid, offer, slot.channelId, amount, price, request);
          const charge = problem === undefined ? BigInt(paid.amount) : price;
          slot.release(price, amount, problem === undefined ? BigInt(paid.extra.chargedTotal) : undefined);
          spent += charge;
          streamSpent += charge;
          counted.set(amount, charge);
          slot.state.receipts += 1;
          slot.state.lastReceipt = paid.extra.receipt;
          await saveQuietly(slot);
          if (problem !== undefined) throw new Error(`invalid block receipt from ${request.url}: ${problem}`);
          return { response: paid, covered: outcome.covered };
        }
        slot.release(price, amount);
        const view = viewOf(outcome.required, slot.channelId);
        if (view) {
          slot.resync(view);
          await saveQuietly(slot);
        }
        const error = outcome.required?.error ?? outcome.error;
        const corrective = error === "insufficient_amount" || error === "voucher_reused";
        if (attempt > 0 || !(corrective && view)) {
          throw new Error(`block refused: ${outcome.status} ${error ?? ""}`.trim());
        }
      }
    };
    return {
      pay: (need) => {
        const paying = pay(need);
        inFlight.add(paying);
        void paying.catch(() => undefined).finally(() => inFlight.delete(paying));
        return paying;
      },
      check: async (receipt: StreamReceipt, events: number) => {
        // A block paid while the stream ended is counted before its final charge is given back.
        await Promise.allSettled([...inFlight]);
        const unitPrice = BigInt(receipt.unitPrice);
        let sum = 0n;
        let given = 0n;
        for (const [index, block] of receipt.blocks.entries()) {
          const amount = BigInt(block.extra?.voucherAmount ?? -1);
          const problem = await receiptProblem(
            block,
            offer,
            BigInt(block.extra.channelId),
            amount,
            blockPrice,
            request,
          );
          if (problem !== undefined) return `block ${index}: ${problem}`;
          const charge = BigInt(block.amount);
          sum += charge;
          // Give back what a block was finally charged less than counted.
          const before = index === 0 && firstCharge !== undefined ? firstCharge : counted.get(amount);
          if (before !== undefined && charge < before) given += before - charge;
        }
        if (given > 0n) {
          // What the last blocks were charged less than counted is no longer spent, and the
          // channel's charged total known here comes down by as much, so later vouchers reuse
          // that headroom instead of signing beyond it (the server would claim it).
          spent -= given;
          const slot = await slotFor(offer, request.url);
          slot.chargedKnown = slot.chargedKnown > given ? slot.chargedKnown - given : 0n;
          slot.mirror();
          await saveQuietly(slot);
        }
        if (sum !== BigInt(receipt.charge)) return `blocks charge ${sum}, the receipt says ${receipt.charge}`;
        if (BigInt(receipt.units) * unitPrice !== sum) return `${receipt.units} units do not cost ${sum}`;
        if (receipt.unit === "chunk" && receipt.units > events) {
          return `charged ${receipt.units} events, received ${events}`;
        }
        return undefined;
      },
    };
  }

  /** A mid-stream voucher POSTed to the stream's URL with `paychan-stream`. */
  const postBlock =
    (url: string) =>
    async (header: string, streamId: string): Promise<BlockOutcome> => {
      const response = await fetchImpl(url, {
        method: "POST",
        headers: { [PAYMENT_SIGNATURE_HEADER]: header, [STREAM_HEADER]: streamId },
      });
      const paidHeader = response.headers.get(PAYMENT_RESPONSE_HEADER);
      if (response.status === 200 && paidHeader) {
        const body = (await response.json()) as { covered?: unknown };
        return {
          paid: decodeHeader<SettleResponse>(paidHeader),
          covered: typeof body.covered === "number" ? body.covered : 0,
        };
      }
      const required = decodeRequired(response);
      let error: string | undefined;
      try {
        error = ((await response.json()) as { error?: string }).error;
      } catch {
        // No JSON body.
      }
      return { status: response.status, ...(required ? { required } : {}), ...(error ? { error } : {}) };
    };

  /** Opens a metered WebSocket (see openPaidWebSocket.ts), paying its blocks from this instance's channels. */
  async function openWebSocket(url: string): Promise<PaidWebSocket> {
    const httpUrl = url.replace(/^ws(s?):/i, "http$1:");
    const request: ReplayableRequest = { url: httpUrl, method: "GET", headers: new Headers(), init: { method: "GET" } };
    const route = routeKey(request);
    let offer = offers.get(route);
    if (!offer) {
      const first = await fetchImpl(httpUrl);
      const required = first.status === 402 ? decodeRequired(first) : undefined;
      await drain(first);
      offer = required && pick(required);
      if (!offer) throw new Error(`createPayingFetch: ${httpUrl} offers no channel payment (status ${first.status})`);
      offers.set(route, offer);
    }
    const chosen = offer;
    const socket = new PaidWebSocket(url);
    const probe = (header: string) => fetchImpl(httpUrl, { headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
    const slot = await slotFor(chosen, httpUrl);
    const paying = slot.underBoundQuote(chosen);
    const payer = blockPayer(chosen, paying, BigInt(paying.amount), undefined, request, probe, (header) =>
      socket.deliver(header),
    );
    await socket.open(payer, paying.amount);
    return socket;
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
    let requoted = false;
    let viewIsFresh = false;
    let attempt = 0;
    for (;;) {
      let price = BigInt(offer.amount);
      checkLimits(price, request.url);
      reserved += price;
      let slot: ChannelSlot;
      let amount: bigint;
      let paying: ChannelOffer = offer;
      try {
        slot = await slotFor(offer, request.url);
        // A channel holding a rate for its life pays the dollar price at that rate, under its own quote.
        paying = slot.underBoundQuote(offer);
        if (paying !== offer) {
          reserved -= price;
          price = BigInt(paying.amount);
          checkLimits(price, request.url);
          reserved += price;
        }
        amount = await reserveWithin(slot, price, paying, request.url, send, viewIsFresh);
      } catch (error) {
        reserved -= price;
        throw error;
      }
      let response: Response;
      try {
        const header = await signVoucher(slot, amount, offer, paying, request.url);
        response = await send(header);
        // store_unavailable: nothing was charged and the same voucher may be resent (docs/protocol.md).
        for (let retry = 0; retry < STORE_RETRIES && response.status === 503; retry++) {
          if (decodeRequired(response)?.error !== "store_unavailable") break;
          await drain(response);
          await new Promise((resolve) => setTimeout(resolve, STORE_RETRY_DELAY_MS * (retry + 1)));
          response = await send(header);
        }
        if (autoTopUp) response = await resendUntilSeen(response, slot, amount, () => send(header));
      } catch (error) {
        slot.lose(price, amount);
        reserved -= price;
        throw error;
      }

      const paidHeader = response.headers.get(PAYMENT_RESPONSE_HEADER);
      if (paidHeader && response.status < 400) {
        let paid: SettleResponse | undefined;
        let problem: string | undefined;
        try {
          paid = decodeHeader<SettleResponse>(paidHeader);
          problem = await receiptProblem(paid, offer, slot.channelId, amount, price, request);
        } catch (error) {
          problem = `unreadable PAYMENT-RESPONSE: ${(error as Error).message}`;
        }
        reserved -= price;
        if (problem !== undefined || !paid) {
          // Not trusted: the charged total it claims is not adopted; the full price counts as spent.
          slot.release(price, amount);
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
            receipt: (paid?.extra?.receipt ?? {}) as SignedReceipt,
            receiptValid: false,
            receiptProblem: problem,
            resynced,
          };
          options.onPayment?.(flagged, response);
          return attach(response, flagged);
        }
        const charge = BigInt(paid.amount);
        const chargedTotal = BigInt(paid.extra.chargedTotal);
        slot.release(price, amount, chargedTotal);
        spent += charge;
        slot.state.receipts += 1;
        slot.state.lastReceipt = paid.extra.receipt;
        slot.adoptQuote(paid);
        const remaining = /^\d+$/.test(String(paid.extra.remaining)) ? BigInt(paid.extra.remaining) : undefined;
        if (remaining !== undefined) slot.learnDeposit(remaining + chargedTotal);
        await saveQuietly(slot);
        let topUp: FundingResult | undefined;
        let topUpError: unknown;
        if (autoTopUp && remaining !== undefined) {
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
          receipt: paid.extra.receipt,
          receiptValid: true,
          resynced,
          ...(paid.extra.asset ? { asset: paid.extra.asset } : {}),
          ...(paid.extra.rate && /^\d+$/.test(paid.extra.rate) ? { rate: BigInt(paid.extra.rate) } : {}),
          ...(requoted ? { requoted } : {}),
          ...(topUp ? { topUp } : {}),
          ...(topUpError !== undefined ? { topUpError } : {}),
        };
        options.onPayment?.(payment, response);
        if (response.headers.get(STREAM_HEADER)) {
          const payer = blockPayer(offer, paying, price, charge, request, send, postBlock(request.url));
          return attach(consumeMeteredStream(response, payer), payment);
        }
        return attach(response, payment);
      }

      // Not paid: nothing was charged for this voucher.
      slot.release(price, amount);
      reserved -= price;
      const required = decodeRequired(response);
      if (!required) return response;
      const view = viewOf(required, slot.channelId);
      viewIsFresh = view !== undefined;
      if (view) {
        slot.resync(view);
        await saveQuietly(slot);
      }
      const fresh = pick(required);
      if (fresh) offers.set(route, fresh);
      // A refusal caused by this client's own amounts (state lost or stale, or pushed up by an
      // earlier refused voucher) is corrected by the view; one above the deposit is retried when
      // the price now fits, or with autoTopUp (which tops up before signing again).
      const corrective =
        required.error === "insufficient_amount" ||
        required.error === "voucher_reused" ||
        (required.error === "amount_exceeds_deposit" && (autoTopUp !== undefined || slot.fits(price)));
      // A 402 without error after paying means the price or terms changed, and a quote that expired
      // (or that the server no longer honours) comes back with a fresh one: try the fresh offer once.
      const changed = fresh !== undefined && (required.error === undefined || requotes(required.error));
      if (attempt > 0 || (!(corrective && view) && !changed)) return response;
      resynced = corrective;
      requoted = required.error === "quote_expired";
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
      value: (channelId: bigint) => book.find(channelId),
    },
    openWebSocket: { value: openWebSocket },
  }) as PayingFetch;
}
