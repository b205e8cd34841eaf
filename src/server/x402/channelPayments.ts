import type { Address, Hex } from "viem";
import type { ChannelRecord } from "../../protocol/channel";
import { channelIdHex, decodePaymentSignature, encodeHeader, type ChannelView } from "../../protocol/headers";
import type { ReasonCode } from "../../protocol/reasons";
import { requestHash, type ReceiptSigner, type SignedReceipt } from "../../protocol/receipt";
import type { AcceptedVoucher, PaymentStore } from "../../store/types";
import type { CheckResult, Ticket, VerificationEngine } from "../engine";
import { retriedReceipt, type GateObserver } from "../gate";
import type { Network, PaymentPayload, PaymentRequirements, SettleResponse } from "./x402Types";

/**
 * Channel payments for x402's resource server: the same engine, store and receipts as paychan's
 * gate, in the order x402 runs a paid request (verify → handler → settle, or cancel when the
 * handler fails).
 *
 * - verify checks the voucher in memory (no RPC for a known channel, no disk) and reserves its
 *   charge, so concurrent requests see it;
 * - settle, once the handler succeeded and before x402 releases its buffered response, signs the
 *   receipt and makes the voucher durable: nothing reaches the client before the voucher is on disk;
 * - cancel, when the handler failed (non-2xx or a throw), takes the reservation back: the voucher
 *   is dropped, never stored and never claimed, so the payer is not charged for the request.
 *
 * State is kept per payment payload object: x402 passes the same object to every step of one
 * request. A voucher sent again (a retry) gets the original answer and is not charged again.
 */

export interface ChannelPaymentsOptions {
  readonly engine: VerificationEngine;
  readonly store: PaymentStore;
  readonly receipts: ReceiptSigner;
  /** CAIP-2 network of the channels. */
  readonly network: Network;
  /** Loads a channel the engine does not hold yet (see PaymentServer.lookupChannel). */
  readonly lookupChannel?: (channelId: bigint) => Promise<ChannelRecord | undefined>;
  /** How long a retry of an accepted voucher is answered again (ms). Default 60,000. */
  readonly retryWindowMs?: number;
  readonly observer?: GateObserver;
}

/** The request a payment is for, as its receipt names it. */
export interface RequestLine {
  readonly method: string;
  /** Path and query, e.g. "/weather?city=Lisbon". */
  readonly pathAndQuery: string;
}

/** A verdict on a voucher: accepted (or a retry), or refused with a reason code. */
export type ChannelVerdict =
  | { readonly ok: true; readonly payer: Address }
  | { readonly ok: false; readonly reason: ReasonCode; readonly channel?: ChannelView };

/** The outcome of settling: the PAYMENT-RESPONSE body, or why the voucher could not be kept. */
export type ChannelSettlement =
  { readonly ok: true; readonly response: SettleResponse } | { readonly ok: false; readonly reason: ReasonCode };

type Held =
  | { readonly kind: "accepted"; readonly ticket: Ticket; readonly request: Hex; readonly started: bigint }
  | { readonly kind: "retry"; readonly response: SettleResponse }
  | { readonly kind: "refused"; readonly channel: ChannelView | undefined };

/** A reserved voucher's end: the stored voucher once durable, undefined once dropped. */
interface Reservation {
  readonly done: Promise<AcceptedVoucher | undefined>;
  finish(voucher: AcceptedVoucher | undefined): void;
  /** Takes the reservation back should neither settle nor cancel come. */
  readonly timer: NodeJS.Timeout;
}

const DEFAULT_RETRY_WINDOW_MS = 60_000;

export class ChannelPayments {
  private readonly held = new WeakMap<object, Held>();
  /** Reserved vouchers not yet stored or dropped, by channel and amount. */
  private readonly reservations = new Map<string, Reservation>();
  /** Per channel, the charges reserved and not yet handed to the store. */
  private readonly unstored = new Map<bigint, bigint>();
  private readonly retryWindowMs: number;

  constructor(private readonly options: ChannelPaymentsOptions) {
    this.retryWindowMs = options.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS;
  }

  /**
   * Verifies the voucher of `payload` for a request priced `requirements.amount` (x402 has
   * already matched the payload to these requirements) and reserves its charge.
   */
  async verify(
    payload: PaymentPayload,
    requirements: PaymentRequirements,
    request: RequestLine,
  ): Promise<ChannelVerdict> {
    const started = process.hrtime.bigint();
    // The same decoder as a PAYMENT-SIGNATURE header: both paths accept exactly the same vouchers.
    const decoded = decodePaymentSignature(encodeHeader(payload));
    if (!decoded.ok) return this.refuse(payload, decoded.reason);
    const { channelId, amount, signature } = decoded.voucher;
    const price = BigInt(requirements.amount);
    const reqHash = requestHash(request.method, request.pathAndQuery);

    const { engine } = this.options;
    let result: CheckResult;
    try {
      result = engine.check(channelId, amount, signature, price);
      if (result.kind === "unknown_channel") result = await this.lookup(channelId, amount, signature, price);
      // Read at once: the first request's end removes its reservation.
      const pending = result.kind === "retry" ? this.reservations.get(voucherKey(channelId, amount)) : undefined;
      // The same voucher is still in its first request: wait for its end. Dropped, the amount is
      // free again and this request may use it.
      if (pending && (await pending.done) === undefined) result = engine.check(channelId, amount, signature, price);
    } catch {
      // The engine reads the store on a channel's first use after a restart.
      return this.refuse(payload, "store_unavailable");
    }
    switch (result.kind) {
      case "unknown_channel":
        return this.refuse(payload, "unknown_channel");
      case "rejected":
        return this.refuse(payload, result.reason, result.channel);
      case "retry":
        return this.retry(payload, channelId, amount, signature, reqHash);
      case "accepted": {
        const { ticket } = result;
        this.held.set(payload, { kind: "accepted", ticket, request: reqHash, started });
        this.addUnstored(channelId, ticket.charge);
        let finish!: (voucher: AcceptedVoucher | undefined) => void;
        const done = new Promise<AcceptedVoucher | undefined>((resolve) => (finish = resolve));
        // A handler that never ends must not hold the charge for good: past the offer's timeout
        // the reservation is taken back, and a late settle finds nothing to settle.
        const timer = setTimeout(
          () => void this.cancel(payload),
          Math.max(1, requirements.maxTimeoutSeconds) * 1000,
        ).unref();
        this.reservations.set(voucherKey(channelId, amount), { done, finish, timer });
        return { ok: true, payer: ticket.payer };
      }
    }
  }

  /**
   * Makes the voucher verified for `payload` durable and answers the PAYMENT-RESPONSE body.
   * `requirements.amount` is the final charge: the price, or less when the seller settles an
   * "upto" route for less (x402's settlement overrides).
   */
  async settle(payload: PaymentPayload, requirements: Readonly<PaymentRequirements>): Promise<ChannelSettlement> {
    const held = this.held.get(payload);
    if (held === undefined || held.kind === "refused") return { ok: false, reason: "invalid_payload" };
    if (held.kind === "retry") return { ok: true, response: held.response };
    this.held.delete(payload);
    const final = BigInt(requirements.amount);
    return this.store(held, final >= 0n && final < held.ticket.charge ? final : held.ticket.charge);
  }

  /**
   * The handler failed: drops the voucher verified for `payload`. When other accepted vouchers
   * were let through on the strength of its amount, it is kept instead, charged 0 (see
   * VerificationEngine.cancel), so what was served stays claimable.
   */
  async cancel(payload: PaymentPayload): Promise<void> {
    const held = this.held.get(payload);
    if (held?.kind !== "accepted") return;
    this.held.delete(payload);
    const { ticket } = held;
    if (this.options.engine.cancel(ticket)) {
      this.addUnstored(ticket.channelId, -ticket.charge);
      this.finish(ticket, undefined);
      return;
    }
    await this.store(held, 0n);
  }

  /** The server's view of the channel a refused `payload` named, for the 402's `extra.channelState`. */
  refusedChannel(payload: object): ChannelView | undefined {
    const held = this.held.get(payload);
    return held?.kind === "refused" ? held.channel : undefined;
  }

  /** Checks a voucher on a channel the engine does not hold, once the chain was asked for it. */
  private async lookup(channelId: bigint, amount: bigint, signature: Hex, price: bigint): Promise<CheckResult> {
    const { engine, lookupChannel } = this.options;
    const unknown: CheckResult = { kind: "unknown_channel" };
    if (lookupChannel === undefined) return unknown;
    // NOTE: only a validly signed voucher may cost a chain lookup.
    const verdict = engine.verifySignature(channelId, amount, signature);
    if (verdict !== "ok") return { kind: "rejected", reason: verdict };
    let record: ChannelRecord | undefined;
    try {
      record = await lookupChannel(channelId);
    } catch {
      return unknown;
    }
    if (record === undefined) return unknown;
    if (engine.record(channelId) === undefined) return { kind: "rejected", reason: "wrong_payee" };
    return engine.check(channelId, amount, signature, price);
  }

  /** Signs the receipt for `charge` and stores the voucher; no await before the store call keeps totals in order. */
  private async store(held: Extract<Held, { kind: "accepted" }>, charge: bigint): Promise<ChannelSettlement> {
    const { engine, store, receipts, observer } = this.options;
    const { ticket } = held;
    if (charge !== ticket.charge) engine.settleCharge(ticket, charge);
    this.addUnstored(ticket.channelId, -ticket.charge);
    // The channel's total as stored: every charge handed to the store, this one included, and
    // none still reserved by a request in its handler.
    const chargedTotal = this.chargedNow(ticket.channelId) - this.unstoredOf(ticket.channelId);
    const receipt = receipts.sign({
      channelId: ticket.channelId,
      voucherAmount: ticket.amount,
      charge,
      chargedTotal,
      request: held.request,
      issuedAt: Math.floor(Date.now() / 1000),
    });
    const voucher: AcceptedVoucher = {
      channelId: ticket.channelId,
      amount: ticket.amount,
      signature: ticket.signature,
      charge,
      chargedTotal,
      receipt: JSON.stringify(receipt),
      acceptedAt: Date.now(),
    };
    try {
      await store.recordVoucher(voucher);
    } catch {
      if (charge !== ticket.charge) engine.settleCharge(ticket, ticket.charge, charge);
      engine.release(ticket);
      this.finish(ticket, undefined);
      observer?.rejected?.("store_unavailable");
      return { ok: false, reason: "store_unavailable" };
    }
    this.finish(ticket, voucher);
    observer?.accepted?.(ticket, Number(process.hrtime.bigint() - held.started) / 1e9);
    return { ok: true, response: this.response(voucher, ticket.payer, receipt) };
  }

  private async retry(
    payload: PaymentPayload,
    channelId: bigint,
    amount: bigint,
    signature: Hex,
    reqHash: Hex,
  ): Promise<ChannelVerdict> {
    let original: AcceptedVoucher | undefined;
    try {
      original = this.options.store.findVoucher(channelId, amount);
    } catch {
      return this.refuse(payload, "store_unavailable");
    }
    const receipt = retriedReceipt(original, signature, reqHash, this.retryWindowMs);
    if (original === undefined || receipt === undefined) {
      return this.refuse(payload, "voucher_reused", this.options.engine.channelView(channelId));
    }
    this.options.observer?.retried?.(channelId, amount);
    const payer = this.options.engine.record(channelId)?.payer ?? ZERO_ADDRESS;
    this.held.set(payload, { kind: "retry", response: this.response(original, payer, receipt) });
    return { ok: true, payer };
  }

  private refuse(payload: object, reason: ReasonCode, channel?: ChannelView): ChannelVerdict {
    this.held.set(payload, { kind: "refused", channel });
    this.options.observer?.rejected?.(reason);
    return { ok: false, reason, ...(channel ? { channel } : {}) };
  }

  /** x402's SettleResponse for a stored voucher: `amount` is this request's charge; paychan's figures ride in `extra`. */
  private response(voucher: AcceptedVoucher, payer: Address, receipt: SignedReceipt): SettleResponse {
    const deposit = this.options.engine.record(voucher.channelId)?.deposit;
    return {
      success: true,
      transaction: "",
      network: this.options.network,
      payer,
      amount: voucher.charge.toString(),
      extra: {
        channelId: channelIdHex(voucher.channelId),
        voucherAmount: voucher.amount.toString(),
        chargedTotal: voucher.chargedTotal.toString(),
        remaining: deposit === undefined ? "0" : (deposit - voucher.chargedTotal).toString(),
        receipt,
      },
    };
  }

  private finish(ticket: Ticket, voucher: AcceptedVoucher | undefined): void {
    const key = voucherKey(ticket.channelId, ticket.amount);
    const reservation = this.reservations.get(key);
    if (reservation === undefined) return;
    clearTimeout(reservation.timer);
    reservation.finish(voucher);
    this.reservations.delete(key);
  }

  private chargedNow(channelId: bigint): bigint {
    const view = this.options.engine.channelView(channelId);
    return view === undefined ? 0n : BigInt(view.chargedTotal);
  }

  private unstoredOf(channelId: bigint): bigint {
    return this.unstored.get(channelId) ?? 0n;
  }

  private addUnstored(channelId: bigint, delta: bigint): void {
    const next = this.unstoredOf(channelId) + delta;
    if (next === 0n) this.unstored.delete(channelId);
    else this.unstored.set(channelId, next);
  }
}

const ZERO_ADDRESS: Address = "0x0000000000000000000000000000000000000000";

function voucherKey(channelId: bigint, amount: bigint): string {
  return `${channelId.toString(16)}:${amount.toString(16)}`;
}
