import { randomUUID } from "node:crypto";
import { SCHEME, type SettleResponse } from "../../protocol/headers";
import type { StreamEnd, StreamReceipt, VoucherRequest } from "../../protocol/stream";
import type { ChannelPayment, PaidRequest, Payment, PaymentGate, Refusal } from "../gate";
import type { ReasonCode } from "../../protocol/reasons";
import type { ResolvedMeter } from "../routes";

/**
 * One metered stream on the server: the blocks paid for it (each a durable voucher accepted by
 * {@link PaymentGate.authorize} for `blockUnits × unitPrice`) and the units sent. {@link take}
 * lets a unit out only while the accepted blocks cover it; when they are about to run out it asks
 * for the next block (`ask`), and when they have run out it waits, paused, until a block arrives
 * or `voucherTimeoutMs` passes. {@link finish} charges every block by use and returns the receipt.
 */
export class MeteredStream {
  readonly id = randomUUID();
  private readonly blocks: ChannelPayment[] = [];
  private covered = 0;
  private served = 0;
  private asked = false;
  private wake: (() => void) | undefined;
  private receipt: StreamReceipt | undefined;
  /** How long each pause for a voucher lasted (ms). */
  readonly pauses: number[] = [];

  constructor(
    readonly request: PaidRequest,
    readonly meter: ResolvedMeter,
    first: ChannelPayment,
    private readonly ask: (request: VoucherRequest) => void,
  ) {
    this.add(first);
  }

  get unitsServed(): number {
    return this.served;
  }

  get unitsCovered(): number {
    return this.covered;
  }

  get ended(): boolean {
    return this.receipt !== undefined;
  }

  /** Units that may still be sent without another block. */
  available(): number {
    return this.covered - this.served;
  }

  /**
   * Resolves true once `units` more are covered (and counts them as sent: send them now), false
   * when the stream ended or no voucher came in time (then end it with `voucher_timeout`).
   */
  async take(units: number): Promise<boolean> {
    while (this.covered - this.served < units) {
      if (this.receipt) return false;
      this.requestBlock(true);
      const started = performance.now();
      const arrived = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = undefined;
          resolve(false);
        }, this.meter.voucherTimeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve(true);
        };
      });
      this.pauses.push(performance.now() - started);
      if (!arrived) return false;
    }
    if (this.receipt) return false;
    this.served += units;
    // Ask ahead, so the next block usually arrives before this one runs out.
    if (this.covered - this.served <= this.meter.blockUnits / 2) this.requestBlock(false);
    return true;
  }

  /** Adds an accepted, durable block. */
  add(payment: ChannelPayment): void {
    this.blocks.push(payment);
    this.covered += this.meter.blockUnits;
    this.asked = false;
    this.wake?.();
  }

  /** Whether `amount` (of `channelId`) already paid a block of this stream. */
  holds(channelId: bigint, amount: bigint): ChannelPayment | undefined {
    return this.blocks.find((b) => b.channelId === channelId && b.amount === amount);
  }

  /** Ends the stream: charges each block what it covered of the units sent, and returns the receipt. */
  finish(ended: StreamEnd): StreamReceipt {
    if (this.receipt) return this.receipt;
    this.wake?.();
    const { unitPrice, blockUnits } = this.meter;
    let left = this.served;
    const blocks: SettleResponse[] = [];
    for (const block of this.blocks) {
      const used = Math.min(left, blockUnits);
      left -= used;
      if (!block.retry) block.charge(BigInt(used) * unitPrice);
      blocks.push(block.response());
    }
    this.receipt = {
      streamId: this.id,
      unit: this.meter.unit,
      unitPrice: unitPrice.toString(),
      units: this.served,
      charge: (BigInt(this.served) * unitPrice).toString(),
      ended,
      blocks,
    };
    return this.receipt;
  }

  private requestBlock(paused: boolean): void {
    // Asked ahead already: ask again only to say the stream is now paused (a client with the
    // voucher in flight ignores it; one whose voucher was refused pays again).
    if (this.asked && !paused) return;
    this.asked = true;
    this.ask({
      streamId: this.id,
      amount: (this.meter.unitPrice * BigInt(this.meter.blockUnits)).toString(),
      blockUnits: this.meter.blockUnits,
      served: this.served,
      covered: this.covered,
      paused,
    });
  }
}

/** The answer to a mid-stream voucher, framework-neutral. */
export type BlockAnswer =
  | { readonly ok: true; readonly status: 200; readonly response: SettleResponse; readonly covered: number }
  | { readonly ok: false; readonly status: number; readonly error: ReasonCode; readonly refusal?: Refusal };

/**
 * The live metered streams of one server, by id, and the mid-stream voucher path shared by SSE
 * (a POST carrying `paychan-stream`) and WebSocket (a `paychan.voucher` message).
 */
export class StreamRegistry {
  private readonly streams = new Map<string, MeteredStream>();
  /** Called when a stream ends, with its receipt (for metrics, logs and tests). */
  onClose: ((stream: MeteredStream, receipt: StreamReceipt) => void) | undefined;

  constructor(private readonly gate: PaymentGate) {}

  /** Starts a metered stream paid by its first block; `ask` delivers voucher requests in-band. */
  open(
    request: PaidRequest,
    meter: ResolvedMeter,
    first: Payment,
    ask: (request: VoucherRequest) => void,
  ): MeteredStream | undefined {
    if (first.scheme !== SCHEME) return undefined;
    const stream = new MeteredStream(request, meter, first, ask);
    this.streams.set(stream.id, stream);
    return stream;
  }

  /** Ends a stream and forgets it. */
  close(stream: MeteredStream, ended: StreamEnd): StreamReceipt {
    const first = !stream.ended;
    this.streams.delete(stream.id);
    const receipt = stream.finish(ended);
    if (first) this.onClose?.(stream, receipt);
    return receipt;
  }

  get size(): number {
    return this.streams.size;
  }

  /**
   * Pays the next block of stream `streamId` with `paymentHeader` (a PAYMENT-SIGNATURE). The
   * voucher goes through the gate as a request for one block of the stream's route: accepted
   * (and durable) it covers `blockUnits` more; a retry of a block this stream holds is answered
   * again without adding to it; anything else is refused with the gate's reason code.
   */
  async pay(streamId: string, paymentHeader: string | undefined): Promise<BlockAnswer> {
    const stream = this.streams.get(streamId);
    if (!stream || stream.ended) return { ok: false, status: 404, error: "unknown_stream" };
    const request: PaidRequest = { ...stream.request, paymentHeader };
    const result = await this.gate.authorize(request);
    if (!result.ok) return { ok: false, status: result.status, error: result.reason, refusal: result };
    if (result.scheme !== SCHEME) {
      // An `exact` transfer is final: it cannot be charged by use. Offered streams take vouchers only.
      return { ok: false, status: 402, error: "unsupported_scheme" };
    }
    if (result.retry) {
      const held = stream.holds(result.channelId, result.amount);
      if (!held) {
        const refusal = this.gate.refuse(request, "voucher_reused");
        return { ok: false, status: refusal.status, error: refusal.reason, refusal };
      }
      return { ok: true, status: 200, response: held.response(), covered: stream.unitsCovered };
    }
    if (stream.ended) {
      // The stream ended while the voucher was being made durable: it pays for nothing.
      result.charge(0n);
      return { ok: true, status: 200, response: result.response(), covered: stream.unitsCovered };
    }
    stream.add(result);
    return { ok: true, status: 200, response: result.response(), covered: stream.unitsCovered };
  }
}
