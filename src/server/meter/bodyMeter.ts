import type http from "node:http";
import { encodeHeader, PAYMENT_RESPONSE_HEADER } from "../../protocol/headers";
import {
  formatMeterHeader,
  METER_HEADER,
  PAYMENT_RECEIPT_EVENT,
  PAYMENT_REQUIRED_EVENT,
  sseEvent,
  STREAM_HEADER,
  type StreamEnd,
  type StreamReceipt,
} from "../../protocol/stream";
import type { PaidRequest, Payment } from "../gate";
import type { ResolvedMeter } from "../routes";
import type { MeteredStream, StreamRegistry } from "./meteredStream";

/** HTTP trailer carrying a chunked metered response's receipt: base64(JSON) of a {@link StreamReceipt}. */
export const RECEIPT_TRAILER = "payment-receipt";

const EXPOSE = "payment-required, payment-response, paychan-stream, paychan-meter";

/** How a metered body is framed: server-sent events (in-band requests and receipt) or plain chunks. */
export type BodyFraming = "sse" | "chunked";

/**
 * Writes a metered response body: each piece goes out only once {@link MeteredStream.take} says
 * the accepted blocks cover it. With SSE, voucher requests and the final receipt are events of
 * the stream itself; a plain chunked body cannot carry them, so its client pays blocks ahead (by
 * the `paychan-meter` terms) and the receipt is the `payment-receipt` trailer.
 */
export class BodyMeter {
  private closed: Promise<StreamReceipt> | undefined;
  private receipt: StreamReceipt | undefined;

  private constructor(
    private readonly res: http.ServerResponse,
    private readonly registry: StreamRegistry,
    readonly stream: MeteredStream,
    readonly framing: BodyFraming,
  ) {
    // The client left: charge what it received; nothing more is written.
    res.on("close", () => {
      if (!this.receipt) this.receipt = this.registry.close(this.stream, "client_closed");
    });
  }

  /**
   * Opens the stream paid by `payment` (the first block) and writes the response head: `status`,
   * `headers` (e.g. the upstream's), `paychan-stream`, `paychan-meter` and the first block's
   * PAYMENT-RESPONSE. Undefined when the payment cannot pay by use (an `exact` transfer).
   */
  static open(
    res: http.ServerResponse,
    registry: StreamRegistry,
    paid: { readonly request: PaidRequest; readonly meter: ResolvedMeter; readonly payment: Payment },
    framing: BodyFraming,
    status = 200,
    headers: http.OutgoingHttpHeaders = {},
  ): BodyMeter | undefined {
    const opened: { meter?: BodyMeter } = {};
    const stream = registry.open(paid.request, paid.meter, paid.payment, (request) => {
      if (framing === "sse" && !res.destroyed && !opened.meter?.receipt) {
        res.write(sseEvent(PAYMENT_REQUIRED_EVENT, request));
      }
    });
    if (!stream) return undefined;
    const meter = new BodyMeter(res, registry, stream, framing);
    opened.meter = meter;
    const head: http.OutgoingHttpHeaders = {
      ...headers,
      [STREAM_HEADER]: stream.id,
      [METER_HEADER]: formatMeterHeader(paid.meter.unit, paid.meter.unitPrice, paid.meter.blockUnits),
      [PAYMENT_RESPONSE_HEADER]: paid.payment.responseHeader(),
      "access-control-expose-headers": EXPOSE,
      "cache-control": "private, no-store",
    };
    delete head["content-length"];
    if (framing === "sse") {
      head["content-type"] = "text/event-stream; charset=utf-8";
      head["x-accel-buffering"] = "no";
    } else head.trailer = RECEIPT_TRAILER;
    res.writeHead(status, head);
    res.flushHeaders();
    return meter;
  }

  get ended(): boolean {
    return this.receipt !== undefined;
  }

  /**
   * Sends `piece` (a whole SSE event, or body bytes) costing `units`, once covered; waits,
   * paused, for the voucher when needed. False when it was not sent: the stream has ended (the
   * client left, or no voucher came in time; {@link end} has then been called or must be).
   */
  async send(piece: string | Buffer, units: number): Promise<boolean> {
    if (this.receipt) return false;
    if (units > 0 && !(await this.stream.take(units))) {
      if (!this.receipt) this.end("voucher_timeout");
      return false;
    }
    if (this.receipt) return false;
    if (!this.res.write(piece)) await waitDrain(this.res);
    return !this.receipt;
  }

  /**
   * Sends as many of `bytes` as are covered now, one unit a byte (waiting for a block when none
   * is), until all are sent; false if the stream ended first.
   */
  async sendBytes(bytes: Buffer): Promise<boolean> {
    let at = 0;
    while (at < bytes.length) {
      const now = Math.max(1, Math.min(bytes.length - at, this.stream.available()));
      if (!(await this.send(bytes.subarray(at, at + now), now))) return false;
      at += now;
    }
    return true;
  }

  /** Ends the stream with its receipt (an SSE event, or the trailer), once. */
  end(ended: StreamEnd = "complete"): StreamReceipt {
    if (this.receipt) return this.receipt;
    const receipt = this.registry.close(this.stream, ended);
    this.receipt = receipt;
    if (!this.res.destroyed) {
      if (this.framing === "sse") this.res.end(sseEvent(PAYMENT_RECEIPT_EVENT, receipt));
      else {
        this.res.addTrailers({ [RECEIPT_TRAILER]: encodeHeader(receipt) });
        this.res.end();
      }
    }
    return receipt;
  }

  /** The receipt once the stream has ended. */
  get finalReceipt(): StreamReceipt | undefined {
    return this.receipt;
  }

  /** Resolves when the stream has ended (its receipt). */
  done(): Promise<StreamReceipt> {
    this.closed ??= new Promise((resolve) => {
      const check = () => (this.receipt ? resolve(this.receipt) : undefined);
      this.res.once("close", check);
      this.res.once("finish", check);
      check();
    });
    return this.closed;
  }
}

function waitDrain(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
