import type { SettleResponse } from "./headers";

/**
 * Metered streams (docs/protocol.md#metered-streams): a response (SSE or WebSocket) paid per unit,
 * in blocks. Each block is one voucher for `blockUnits × unitPrice`, authorized like an "upto"
 * request; the last block is charged by use. The wire shapes shared by servers and clients.
 */

/** Response header naming a metered stream; request header of a mid-stream voucher sent for it. */
export const STREAM_HEADER = "paychan-stream";
/** Response header with the stream's terms: `unit=token; unit-price=10; block-units=100`. */
export const METER_HEADER = "paychan-meter";

/** SSE event in which the server asks for the next block's voucher. */
export const PAYMENT_REQUIRED_EVENT = "payment-required";
/** SSE event that ends a metered stream with its exact charge. */
export const PAYMENT_RECEIPT_EVENT = "payment-receipt";
/** SSE event in which an upstream reports the units of the events it sent since its last report (never forwarded). */
export const USAGE_EVENT = "paychan-usage";

/** What the server needs to go on: one more block. */
export interface VoucherRequest {
  readonly streamId: string;
  /** The price of one block, atomic units: the voucher must cover it like an `upto` price. */
  readonly amount: string;
  readonly blockUnits: number;
  /** Units sent so far, and units the accepted blocks cover. */
  readonly served: number;
  readonly covered: number;
  /** True when the stream is paused until the voucher arrives (false: asked ahead of time). */
  readonly paused: boolean;
}

/** Why a metered stream ended. */
export type StreamEnd = "complete" | "client_closed" | "voucher_timeout" | "upstream_error";

/** The final receipt of a metered stream: `charge = units × unitPrice`, the sum of the blocks' charges. */
export interface StreamReceipt {
  readonly streamId: string;
  readonly unit: string;
  readonly unitPrice: string;
  /** Units sent to the client. */
  readonly units: number;
  /** What the stream was charged, atomic units. */
  readonly charge: string;
  readonly ended: StreamEnd;
  /** Each block's PAYMENT-RESPONSE with its final charge and signed receipt, in order. */
  readonly blocks: readonly SettleResponse[];
}

/** Messages of a metered WebSocket (JSON text frames), both ways. */
export type StreamMessage =
  | { readonly type: "paychan.payment-required"; readonly request: VoucherRequest }
  | { readonly type: "paychan.voucher"; readonly payment: string }
  | {
      readonly type: "paychan.voucher-accepted";
      readonly response: SettleResponse;
      readonly covered: number;
    }
  | { readonly type: "paychan.voucher-refused"; readonly error: string }
  | { readonly type: "paychan.receipt"; readonly receipt: StreamReceipt }
  | { readonly type: "paychan.data"; readonly data: unknown };

/** One parsed server-sent event: its `event` name ("message" by default), joined `data`, and its raw text. */
export interface SseEvent {
  readonly event: string;
  readonly data: string;
  /** The event as received, ending with its blank line. */
  readonly raw: string;
}

/**
 * Splits a server-sent event stream into events as text arrives (WHATWG HTML §9.2.6: lines end
 * with CRLF, LF or CR; a blank line ends an event). `push` returns the events completed by `text`.
 */
export class SseParser {
  private buffer = "";

  push(text: string): SseEvent[] {
    this.buffer += text;
    const events: SseEvent[] = [];
    for (;;) {
      const end = /\r\n\r\n|\n\n|\r\r/.exec(this.buffer);
      if (!end) break;
      const raw = this.buffer.slice(0, end.index + end[0].length);
      this.buffer = this.buffer.slice(end.index + end[0].length);
      events.push(parseEvent(raw));
    }
    return events;
  }

  /** Text received after the last complete event. */
  rest(): string {
    return this.buffer;
  }
}

function parseEvent(raw: string): SseEvent {
  let event = "message";
  const data: string[] = [];
  for (const line of raw.split(/\r\n|\n|\r/)) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return { event, data: data.join("\n"), raw };
}

/** Formats one server-sent event carrying `data` as JSON. */
export function sseEvent(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The `paychan-meter` header of a stream's terms. */
export function formatMeterHeader(unit: string, unitPrice: bigint, blockUnits: number): string {
  return `unit=${unit}; unit-price=${unitPrice}; block-units=${blockUnits}`;
}

/** Parses a `paychan-meter` header; undefined when malformed. */
export function parseMeterHeader(
  value: string | null | undefined,
): { unit: string; unitPrice: bigint; blockUnits: number } | undefined {
  if (!value) return undefined;
  const fields = new Map(
    value.split(";").map((part) => {
      const [k, v] = part.split("=").map((s) => s.trim());
      return [k, v] as const;
    }),
  );
  const unit = fields.get("unit");
  const price = fields.get("unit-price");
  const block = fields.get("block-units");
  if (!unit || !price || !/^\d{1,30}$/.test(price) || !block || !/^\d{1,10}$/.test(block)) return undefined;
  return { unit, unitPrice: BigInt(price), blockUnits: Number(block) };
}
