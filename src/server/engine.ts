import type { Address, Hex } from "viem";
import type { ChannelView } from "../protocol/headers";
import type { ReasonCode } from "../protocol/reasons";
import type { ChannelRecord } from "../protocol/channel";
import type { ChannelLedger } from "../store/types";

/**
 * The verification engine: the payment rules and the in-memory money state of every channel.
 * It is synchronous and never touches the network or the disk on the request path.
 *
 * Semantics (docs/protocol.md, "Verification rules"):
 * - Every paid request carries a voucher with a cumulative amount not used before on the channel.
 *   Vouchers may arrive in any order over many connections; none is refused for its order.
 * - A voucher is accepted when `charged + price ≤ max(highest, amount)`, where `charged` is the
 *   sum of all charges on the channel and `highest` the highest voucher accepted so far. So the
 *   server never serves more than the best voucher it holds lets it claim, and a client that pays
 *   exactly the price per request ends with `highest == charged`: what is claimable is what was
 *   charged.
 * - The same voucher sent again (same channel, amount and signature) is a retry: it gets the
 *   original answer and receipt and is not charged again.
 * - A voucher at or below the amount confirmed claimed on-chain (the channel's floor) can only be
 *   a retry: nothing more can be claimed with it. The engine then forgets the amounts below the
 *   floor, so its memory (and, with pruning, the store) holds only the vouchers since the last
 *   claim.
 */

/** Outcome of checking a voucher signature. */
export type SignatureCheck = "ok" | "invalid_signature" | "high_s_signature" | "malformed_signature";

/** Verifies that the signer encoded in `channelId` signed (`channelId`, `amount`). */
export type VoucherSignatureVerifier = (channelId: bigint, amount: bigint, signature: Hex) => SignatureCheck;

export interface EngineOptions {
  /** This server's payee address: channels must pay it. */
  readonly payee: Address;
  /** Tokens this server accepts. */
  readonly tokens: readonly Address[];
  readonly verifySignature: VoucherSignatureVerifier;
  /**
   * A withdrawing channel keeps being served only while its exit is at least this many seconds
   * away, so the settler always has time to claim before the payer can finalize.
   */
  readonly withdrawSafetyMarginSec: number;
  /**
   * Shortest withdraw delay (seconds) a channel may have to be served: the payee needs that long
   * to claim after the payer starts to exit. 0 accepts any delay the contract allows.
   */
  readonly minWithdrawDelay?: number;
  /** Loads the amounts of the vouchers accepted on a channel above `above` (from the store). */
  readonly loadUsedAmounts: (channelId: bigint, above: bigint) => readonly bigint[];
  /**
   * Loads a channel's stored ledger when the engine first learns of the channel, so a channel
   * fetched after a restart continues from what was charged instead of from zero.
   */
  readonly loadLedger?: (channelId: bigint) => ChannelLedger | undefined;
  /** Unix seconds; injectable for tests. */
  readonly nowSec?: () => number;
}

/**
 * A request's price in the channel's token: atomic units, or a function of the channel's record
 * (its token decides the price of a request priced in dollars) that returns the price or the
 * reason it cannot be charged.
 */
export type ChannelPrice = bigint | ((record: ChannelRecord) => bigint | ReasonCode);

/** A voucher accepted by {@link VerificationEngine.check}, not yet durable. */
export interface Ticket {
  readonly channelId: bigint;
  readonly amount: bigint;
  readonly signature: Hex;
  readonly payer: Address;
  /** Charge reserved for this request (the route's price, or its maximum for "upto"). */
  readonly charge: bigint;
  /** The channel's charged total after this request. */
  readonly chargedTotal: bigint;
  /** deposit − chargedTotal. */
  readonly remaining: bigint;
}

export type CheckResult =
  | { readonly kind: "accepted"; readonly ticket: Ticket }
  | { readonly kind: "retry"; readonly channelId: bigint; readonly amount: bigint }
  | { readonly kind: "unknown_channel" }
  | { readonly kind: "rejected"; readonly reason: ReasonCode; readonly channel?: ChannelView };

interface ChannelState {
  record: ChannelRecord;
  /** Why no voucher on this channel can be taken whatever it says (from the record alone), if so; see {@link staticRefusal}. */
  refusal: ReasonCode | undefined;
  charged: bigint;
  highest: bigint;
  highestSignature: Hex | null;
  /** Amounts of accepted vouchers above the floor; loaded from the store on first use after a restart. */
  used: Set<bigint> | undefined;
  /** The highest amount confirmed claimed on-chain so far (never lowered); `used` holds only amounts above it. */
  floor: bigint;
  /** Signatures of accepted vouchers still in memory, to tell a retry from a forged reuse. */
  signatures: Map<bigint, Hex>;
}

/** A channel's state when the engine first learns of it, continuing from its stored ledger, if any. */
function newState(
  record: ChannelRecord,
  ledger: ChannelLedger | undefined,
  refusal: ReasonCode | undefined,
): ChannelState {
  return {
    record,
    refusal,
    charged: ledger?.chargedTotal ?? 0n,
    highest: ledger?.highestAmount ?? 0n,
    highestSignature: ledger?.highestSignature ?? null,
    used: undefined,
    floor: record.claimedOnChain,
    signatures: new Map(),
  };
}

/** Most voucher signatures remembered per channel for retries; older retries are looked up in the store. */
const MAX_REMEMBERED_SIGNATURES = 4096;

export class VerificationEngine {
  private readonly channels = new Map<bigint, ChannelState>();
  private readonly payee: string;
  private readonly tokens: ReadonlySet<string>;
  private readonly nowSec: () => number;

  constructor(private readonly options: EngineOptions) {
    this.payee = options.payee.toLowerCase();
    this.tokens = new Set(options.tokens.map((t) => t.toLowerCase()));
    this.nowSec = options.nowSec ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Restores money state at start-up from the store's ledgers. */
  restore(ledgers: readonly ChannelLedger[], records: readonly ChannelRecord[]): void {
    const byId = new Map(ledgers.map((l) => [l.channelId, l]));
    for (const record of records) {
      this.channels.set(record.channelId, newState(record, byId.get(record.channelId), this.staticRefusal(record)));
    }
  }

  /** Applies an on-chain update from the watcher (new channel, top-up, withdrawal, close...). */
  applyChannel(record: ChannelRecord): void {
    const state = this.channels.get(record.channelId);
    if (state) {
      state.record = record;
      state.refusal = this.staticRefusal(record);
      if (record.claimedOnChain > state.floor) this.raiseFloor(state, record.claimedOnChain);
    } else {
      this.channels.set(
        record.channelId,
        newState(record, this.options.loadLedger?.(record.channelId), this.staticRefusal(record)),
      );
    }
  }

  /** The on-chain record of a channel the engine knows. */
  record(channelId: bigint): ChannelRecord | undefined {
    return this.channels.get(channelId)?.record;
  }

  /**
   * Checks a voucher paying `channelPrice` and, when acceptable, reserves the charge at once so that
   * concurrent requests see it: the one call before the store's write. The caller makes the ticket
   * durable and then calls {@link settle} with the outcome (or, on a path of its own, {@link release}
   * or {@link cancel}).
   */
  check(channelId: bigint, amount: bigint, signature: Hex, channelPrice: ChannelPrice): CheckResult {
    const state = this.channels.get(channelId);
    if (state === undefined) return { kind: "unknown_channel" };
    const record = state.record;
    const refused = this.checkRecord(state);
    if (refused) return refused;
    const used = this.usedAmounts(state, channelId);
    if (used.has(amount)) {
      // NOTE: a retry must repeat the exact voucher; the same amount with another signature is
      // a reuse, refused without spending time on the signature.
      const known = state.signatures.get(amount);
      if (known !== undefined && known.toLowerCase() !== signature.toLowerCase()) {
        return { kind: "rejected", reason: "voucher_reused", channel: this.view(state) };
      }
      return { kind: "retry", channelId, amount };
    }
    if (amount <= state.floor) {
      // Claimed on-chain already, and no longer in memory: answered only if it is a retry of
      // an accepted voucher the store still holds; any other use is refused as a reuse.
      return { kind: "retry", channelId, amount };
    }
    if (amount > record.deposit) {
      return { kind: "rejected", reason: "amount_exceeds_deposit", channel: this.view(state) };
    }
    const price = typeof channelPrice === "bigint" ? channelPrice : channelPrice(record);
    // The view lets a client take back the amount of a voucher refused for its price (an expired quote).
    if (typeof price === "string") return { kind: "rejected", reason: price, channel: this.view(state) };
    const charged = state.charged + price;
    if (charged > (amount > state.highest ? amount : state.highest)) {
      return { kind: "rejected", reason: "insufficient_amount", channel: this.view(state) };
    }
    const verdict = this.options.verifySignature(channelId, amount, signature);
    if (verdict !== "ok") return { kind: "rejected", reason: verdict };

    used.add(amount);
    this.remember(state, amount, signature);
    state.charged = charged;
    if (amount > state.highest) {
      state.highest = amount;
      state.highestSignature = signature;
    }
    return {
      kind: "accepted",
      ticket: {
        channelId,
        amount,
        signature,
        payer: record.payer,
        charge: price,
        chargedTotal: charged,
        remaining: record.deposit - charged,
      },
    };
  }

  /**
   * The one call after the store's write of an accepted ticket: a durable ticket stands as
   * reserved; one whose write failed is released ({@link release}).
   */
  settle(ticket: Ticket, durable: boolean): void {
    if (!durable) this.release(ticket);
  }

  /**
   * The checks of {@link check} that need only the channel's on-chain record and the signature,
   * for a store shared by several instances: there the store decides the money rules under the
   * channel's row lock ({@link PaymentStore.chargeVoucher}) and this engine's ledger is only a
   * view, refreshed by {@link observeLedger}. Returns the record when the voucher may go to the store.
   */
  checkShared(
    channelId: bigint,
    amount: bigint,
    signature: Hex,
  ):
    | { readonly kind: "ok"; readonly record: ChannelRecord; readonly floor: bigint }
    | Exclude<CheckResult, { kind: "accepted" | "retry" }> {
    const state = this.channels.get(channelId);
    if (state === undefined) return { kind: "unknown_channel" };
    const refused = this.checkRecord(state);
    if (refused) return refused;
    if (amount > state.record.deposit) {
      return { kind: "rejected", reason: "amount_exceeds_deposit", channel: this.view(state) };
    }
    const verdict = this.options.verifySignature(channelId, amount, signature);
    if (verdict !== "ok") return { kind: "rejected", reason: verdict };
    return { kind: "ok", record: state.record, floor: state.floor };
  }

  /** Takes a channel's ledger as a shared store committed it. */
  observeLedger(ledger: ChannelLedger): void {
    const state = this.channels.get(ledger.channelId);
    if (!state) return;
    // One instance's commits settle in commit order, so a later ledger is never an older state.
    state.charged = ledger.chargedTotal;
    if (ledger.highestAmount > state.highest) {
      state.highest = ledger.highestAmount;
      state.highestSignature = ledger.highestSignature;
    }
  }

  /**
   * Undoes a ticket whose voucher could not be made durable: its charge is returned and the
   * amount may be used again. The highest voucher is kept: it is validly signed either way.
   */
  release(ticket: Ticket): void {
    const state = this.channels.get(ticket.channelId);
    if (!state) return;
    state.charged -= ticket.charge;
    state.used?.delete(ticket.amount);
    state.signatures.delete(ticket.amount);
  }

  /**
   * Takes back a ticket whose request failed before its voucher was made durable, as if it had
   * never been accepted: its charge is returned, its amount may be used again and, when it was the
   * highest voucher, the highest becomes the best other voucher held (in memory or, durably, in
   * the store's ledger). Unlike {@link release}, nothing of it is kept, so the payer is not charged
   * for it even by a claim of the best voucher.
   *
   * Refused (returns false, nothing changed) when the other accepted vouchers would no longer
   * cover what they were charged: a voucher above the price lets later, lower ones through, and
   * those requests were served on its strength. The caller then keeps the voucher with a charge of
   * 0 ({@link settleCharge}), so what was served stays claimable.
   */
  cancel(ticket: Ticket): boolean {
    const state = this.channels.get(ticket.channelId);
    if (!state || state.signatures.get(ticket.amount) !== ticket.signature) return false;
    const charged = state.charged - ticket.charge;
    let highest = state.highest;
    let highestSignature = state.highestSignature;
    if (ticket.amount === state.highest) {
      let ledger: ChannelLedger | undefined;
      try {
        ledger = this.options.loadLedger?.(ticket.channelId);
      } catch {
        return false;
      }
      highest = ledger?.highestAmount ?? 0n;
      highestSignature = ledger?.highestSignature ?? null;
      for (const [amount, signature] of state.signatures) {
        if (amount !== ticket.amount && amount > highest) {
          highest = amount;
          highestSignature = signature;
        }
      }
      if (charged > highest) return false;
    }
    state.charged = charged;
    state.highest = highest;
    state.highestSignature = highestSignature;
    state.used?.delete(ticket.amount);
    state.signatures.delete(ticket.amount);
    return true;
  }

  /**
   * Changes a ticket's charge from `currentCharge` (initially the reservation) to `finalCharge`
   * after a usage-based route ran; the final charge never exceeds the reservation. Returns the
   * channel's new charged total.
   */
  settleCharge(ticket: Ticket, finalCharge: bigint, currentCharge: bigint = ticket.charge): bigint {
    if (finalCharge < 0n || finalCharge > ticket.charge) {
      throw new RangeError(`final charge ${finalCharge} outside [0, ${ticket.charge}]`);
    }
    const state = this.channels.get(ticket.channelId);
    if (!state) throw new Error(`unknown channel ${ticket.channelId}`);
    state.charged -= currentCharge - finalCharge;
    return state.charged;
  }

  /**
   * Checks only the voucher's signature (the signer is encoded in the channel id), so a request
   * naming an unknown channel costs a chain lookup only when a real key signed it.
   */
  verifySignature(channelId: bigint, amount: bigint, signature: Hex): SignatureCheck {
    return this.options.verifySignature(channelId, amount, signature);
  }

  /** The server's view of a channel, for resynchronizing clients; undefined if unknown. */
  channelView(channelId: bigint): ChannelView | undefined {
    const state = this.channels.get(channelId);
    return state && this.view(state);
  }

  /** Money state of every channel, for the settler and metrics. */
  *ledgers(): IterableIterator<{
    record: ChannelRecord;
    charged: bigint;
    highest: bigint;
    highestSignature: Hex | null;
  }> {
    for (const state of this.channels.values()) {
      yield {
        record: state.record,
        charged: state.charged,
        highest: state.highest,
        highestSignature: state.highestSignature,
      };
    }
  }

  /**
   * The refusal a record earns whatever the voucher and the time (payee, token, status, withdraw
   * delay), computed when the record arrives rather than on every voucher.
   */
  private staticRefusal(record: ChannelRecord): ReasonCode | undefined {
    if (record.payee.toLowerCase() !== this.payee) return "wrong_payee";
    if (!this.tokens.has(record.token.toLowerCase())) return "wrong_token";
    if (record.status === "closed") return "channel_closed";
    if (record.withdrawDelay < (this.options.minWithdrawDelay ?? 0)) return "withdraw_delay_too_short";
    return undefined;
  }

  /** Refuses a channel this server must not take vouchers on now, whatever the voucher. */
  private checkRecord(state: ChannelState): Extract<CheckResult, { kind: "rejected" }> | undefined {
    const record = state.record;
    if (state.refusal !== undefined) return { kind: "rejected", reason: state.refusal };
    if (record.withdrawReadyAt !== 0 && record.withdrawReadyAt - this.nowSec() < this.options.withdrawSafetyMarginSec) {
      return { kind: "rejected", reason: "channel_withdrawing", channel: this.view(state) };
    }
    return undefined;
  }

  private usedAmounts(state: ChannelState, channelId: bigint): Set<bigint> {
    if (state.used === undefined) state.used = new Set(this.options.loadUsedAmounts(channelId, state.floor));
    return state.used;
  }

  /** Forgets the amounts and signatures at or below a new on-chain claimed amount. */
  private raiseFloor(state: ChannelState, floor: bigint): void {
    state.floor = floor;
    if (state.used) for (const amount of state.used) if (amount <= floor) state.used.delete(amount);
    for (const amount of state.signatures.keys()) if (amount <= floor) state.signatures.delete(amount);
  }

  private remember(state: ChannelState, amount: bigint, signature: Hex): void {
    if (state.signatures.size >= MAX_REMEMBERED_SIGNATURES) {
      const oldest = state.signatures.keys().next();
      if (!oldest.done) state.signatures.delete(oldest.value);
    }
    state.signatures.set(amount, signature);
  }

  private view(state: ChannelState): ChannelView {
    return {
      channelId: `0x${state.record.channelId.toString(16)}`,
      deposit: state.record.deposit.toString(),
      chargedTotal: state.charged.toString(),
      highestAmount: state.highest.toString(),
      remaining: (state.record.deposit - state.charged).toString(),
      withdrawReadyAt: state.record.withdrawReadyAt,
    };
  }
}
