import { isAddressEqual, type Address } from "viem";
import {
  channelIdHex,
  SCHEME,
  type ChannelOffer,
  type ChannelView,
  type PaymentRequired,
  type SettleResponse,
} from "../protocol/headers";
import { dollarsToToken, toAtomic } from "../protocol/price";
import { signerOfChannel } from "../protocol/voucher";
import type { TopUpTarget } from "./autoTopUp";
import type { FundingResult } from "./openChannel";
import { channelKey, offerKey, type ChannelState, type ClientState, type ClientStateStore } from "./stateStore";

/**
 * The paying side's per-channel bookkeeping, shared by `createPayingFetch` and the x402 scheme
 * plug-in: which amount to sign next (docs/protocol.md, Concurrency), what is in flight, the
 * deposit as last known, and how a refusal's channel view resynchronizes it. The persisted part
 * lives in the client state store.
 */

/**
 * Group commit for the state file: every save asked for during one turn of the event loop is
 * written once, so a burst of concurrent requests costs one atomic write (and fsync), not one each.
 */
export class GroupSaver {
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
export class ChannelSlot implements TopUpTarget {
  signedMax: bigint;
  chargedKnown: bigint;
  inFlight = 0n;
  deposit: bigint | undefined;
  topUp: Promise<FundingResult> | undefined = undefined;
  failedAt: number | undefined = undefined;
  /** The deposit probe in flight, shared by every request that needs it. */
  probe: Promise<void> | undefined = undefined;
  /** Amounts sent and not answered yet: the server may still accept them. */
  private readonly sent = new Set<bigint>();
  /** Highest amount whose request failed in transit: the server may have accepted it. */
  private lost = 0n;

  constructor(
    readonly channelId: bigint,
    readonly state: ChannelState,
    private readonly saver: GroupSaver,
  ) {
    this.signedMax = BigInt(state.signedMax);
    this.chargedKnown = BigInt(state.chargedKnown);
    this.deposit = state.deposit === undefined ? undefined : BigInt(state.deposit);
  }

  /** The next amount for a request priced `price` (docs/protocol.md, Concurrency). */
  private next(price: bigint): bigint {
    const byCharge = this.chargedKnown + this.inFlight + price;
    return byCharge > this.signedMax ? byCharge : this.signedMax + 1n;
  }

  /** Whether the known deposit covers the next amount for `price` (true while the deposit is unknown). */
  fits(price: bigint): boolean {
    return this.deposit === undefined || this.next(price) <= this.deposit;
  }

  /** What the known deposit can still cover: deposit minus what is charged, signed or in flight. */
  available(): bigint {
    const committed =
      this.chargedKnown + this.inFlight > this.signedMax ? this.chargedKnown + this.inFlight : this.signedMax;
    return this.deposit !== undefined && this.deposit > committed ? this.deposit - committed : 0n;
  }

  /**
   * Picks the next amount and reserves `price`, or answers undefined when that amount would
   * exceed the known deposit. The caller must await {@link persist} before sending the voucher,
   * so a restart never signs the amount again.
   */
  reserve(price: bigint): bigint | undefined {
    // NOTE: never sign above the deposit: a server holding such a voucher could claim it after a
    // later top-up, for requests it never served.
    if (!this.fits(price)) return undefined;
    const next = this.next(price);
    this.signedMax = next;
    this.inFlight += price;
    this.sent.add(next);
    this.mirror();
    return next;
  }

  /** The answer to the request that reserved `price` with `amount` arrived (paid or not). */
  release(price: bigint, amount: bigint, chargedTotal?: bigint): void {
    this.inFlight -= price;
    this.sent.delete(amount);
    if (chargedTotal !== undefined && chargedTotal > this.chargedKnown) this.chargedKnown = chargedTotal;
  }

  /** The request that reserved `price` with `amount` failed in transit: the server may have accepted it. */
  lose(price: bigint, amount: bigint): void {
    this.release(price, amount);
    if (amount > this.lost) this.lost = amount;
  }

  /** Records a deposit seen for the channel; deposits only grow while it is open. */
  learnDeposit(deposit: bigint): void {
    if (this.deposit === undefined || deposit > this.deposit) this.deposit = deposit;
    this.mirror();
  }

  /**
   * Adopts the server's view from a 402 (docs/protocol.md, Resynchronization). Every amount above
   * the highest one the server accepted is unused, except those still in flight or lost in
   * transit: `signedMax` comes back to the highest of these, so a refused voucher (one above the
   * deposit, say) does not push every later amount up.
   */
  resync(view: ChannelView): void {
    let floor = BigInt(view.highestAmount);
    if (this.lost > floor) floor = this.lost;
    for (const amount of this.sent) if (amount > floor) floor = amount;
    this.signedMax = floor;
    this.chargedKnown = BigInt(view.chargedTotal);
    this.learnDeposit(BigInt(view.deposit));
  }

  /**
   * The offer as this channel pays it: when the server bound a quote to the channel for its life,
   * the dollar price (`extra.price`) at that quote's rate, with that quote. Unchanged when there is
   * no bound quote, or the offer is not a quoted one for the same token.
   */
  underBoundQuote(offer: ChannelOffer): ChannelOffer {
    const bound = this.state.quote;
    const { quote, price, decimals } = offer.extra;
    if (!bound || !quote || price === undefined || !isAddressEqual(bound.token, offer.asset)) return offer;
    let amount: bigint;
    try {
      amount = dollarsToToken(toAtomic(price, decimals), decimals, BigInt(bound.rate), decimals);
    } catch {
      // A price finer than the token's decimals cannot be re-priced here: pay the offer as it is.
      return offer;
    }
    return { ...offer, amount: amount.toString(), extra: { ...offer.extra, quote: bound } };
  }

  /** Keeps the quote a paid answer binds to this channel for its life (`lockRate: "channel"`). */
  adoptQuote(paid: SettleResponse): void {
    const quote = paid.extra.quote;
    if (quote && BigInt(quote.channelId) === this.channelId) this.state.quote = quote;
  }

  /** Copies the live numbers into the persisted state object. */
  mirror(): void {
    this.state.signedMax = this.signedMax.toString();
    this.state.chargedKnown = this.chargedKnown.toString();
    if (this.deposit !== undefined) this.state.deposit = this.deposit.toString();
  }

  /** Makes the current numbers durable (group commit). */
  persist(): Promise<void> {
    this.mirror();
    return this.saver.save();
  }
}

/** The server's view of `channelId` in a refusal's channel offer, if it carries one. */
export function viewOf(required: PaymentRequired | undefined, channelId: bigint): ChannelView | undefined {
  const view = required?.accepts?.find((o) => o.scheme === SCHEME)?.extra?.channelState;
  return view && BigInt(view.channelId) === channelId ? view : undefined;
}

/**
 * Whether a refusal asks for the same request again under the fresh quote it carries: the quote
 * paid under expired, or the server no longer honours it.
 */
export function requotes(error: string | undefined): boolean {
  return error === "quote_expired" || error === "invalid_quote";
}

/** The channels of one paying client: their persisted state, and a live slot for each one in use. */
export class ChannelBook {
  readonly state: ClientState;
  readonly saver: GroupSaver;
  private readonly slots = new Map<string, ChannelSlot>();

  constructor(
    private readonly store: ClientStateStore,
    /** The session account: every channel used must take its signatures. */
    private readonly signer: Address,
  ) {
    this.state = store.load();
    this.saver = new GroupSaver(store);
  }

  /** The channel remembered for the offer's terms (network, contract, payee, token), if any. */
  known(offer: ChannelOffer): bigint | undefined {
    const id = this.state.offers[offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset)];
    return id === undefined ? undefined : BigInt(id);
  }

  /** Remembers, durably, that `channelId` pays the offer's terms, with its deposit when known. */
  remember(offer: ChannelOffer, channelId: bigint, deposit?: bigint): void {
    this.state.offers[offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset)] =
      channelIdHex(channelId);
    if (deposit !== undefined) {
      const persisted = this.stateOf(offer, channelId);
      if (persisted.deposit === undefined || deposit > BigInt(persisted.deposit))
        persisted.deposit = deposit.toString();
    }
    this.store.save();
  }

  /** The live slot of a channel; throws when the session account does not sign for it. */
  slot(offer: ChannelOffer, channelId: bigint): ChannelSlot {
    const key = channelKey(offer.network, offer.extra.contract, channelId);
    let slot = this.slots.get(key);
    if (!slot) {
      if (!isAddressEqual(signerOfChannel(channelId), this.signer)) {
        throw new Error(
          `channel ${channelIdHex(channelId)} is signed by ${signerOfChannel(channelId)}, not by the session account ${this.signer}`,
        );
      }
      slot = new ChannelSlot(channelId, this.stateOf(offer, channelId), this.saver);
      this.slots.set(key, slot);
    }
    return slot;
  }

  /** The persisted state of a channel, by id alone. */
  find(channelId: bigint): Readonly<ChannelState> | undefined {
    return Object.values(this.state.channels).find((c) => BigInt(c.channelId) === channelId);
  }

  /** The persisted state of a channel, created empty on first use. */
  private stateOf(offer: ChannelOffer, channelId: bigint): ChannelState {
    return (this.state.channels[channelKey(offer.network, offer.extra.contract, channelId)] ??= {
      channelId: channelIdHex(channelId),
      signedMax: "0",
      chargedKnown: "0",
      receipts: 0,
    });
  }
}
