import type { PaymentRequired, SettleResponse } from "../protocol/headers";
import {
  METER_HEADER,
  parseMeterHeader,
  PAYMENT_RECEIPT_EVENT,
  PAYMENT_REQUIRED_EVENT,
  SseParser,
  STREAM_HEADER,
  type StreamReceipt,
  type VoucherRequest,
} from "../protocol/stream";

/** What the server answered a block's voucher: paid (its PAYMENT-RESPONSE and the units now covered) or refused. */
export type BlockOutcome =
  | { readonly paid: SettleResponse; readonly covered: number }
  | { readonly status: number; readonly required?: PaymentRequired; readonly error?: string };

/** Pays the blocks of one metered stream and checks its receipt (createPayingFetch provides it). */
export interface BlockPayer {
  /** Pays one more block of the stream; resolves once the server accepted it, or throws. */
  pay(request: VoucherRequest): Promise<{ readonly response: SettleResponse; readonly covered: number }>;
  /** Checks the stream's final receipt; resolves what is wrong with it, or undefined. */
  check(receipt: StreamReceipt, eventsReceived: number): Promise<string | undefined>;
}

/** What a metered stream cost, on `response.stream` of a paid streamed response. */
export interface MeteredStreamInfo {
  readonly id: string;
  readonly unit: string;
  readonly unitPrice: bigint;
  readonly blockUnits: number;
  /** Mid-stream vouchers accepted so far. */
  readonly vouchers: number;
  /** How long each accepted mid-stream voucher took, from the server's request to its acceptance (ms). */
  readonly voucherMs: readonly number[];
  /** The PAYMENT-RESPONSE of each accepted mid-stream voucher, in order. */
  readonly blocks: readonly SettleResponse[];
  /** Application events received (the payment events are taken out of the stream); bytes of a plain body. */
  readonly events: number;
  /** Why paying stopped, when it did (a spend limit, a refusal): the server then ends the stream. */
  readonly payError?: unknown;
  /** The final receipt once the stream has ended with one (undefined if it was cut). */
  readonly receipt: Promise<VerifiedStreamReceipt | undefined>;
}

/** A stream receipt and whether it verified. */
export interface VerifiedStreamReceipt {
  readonly receipt: StreamReceipt;
  readonly valid: boolean;
  readonly problem?: string;
}

/**
 * Wraps a metered server-sent event response (one carrying `paychan-stream`): the body given to
 * the caller is the stream without paychan's events; each `payment-required` event is answered
 * by paying one block with `payer` (one at a time; a request made stale by a block already paid
 * is skipped), and the `payment-receipt` event is checked and resolves `stream.receipt`. A plain
 * chunked body metered per byte is paid ahead instead, a block whenever half of the covered bytes
 * have arrived; its receipt is an HTTP trailer, which fetch does not expose (`stream.receipt`
 * resolves undefined). Other responses are returned unchanged.
 */
export function consumeMeteredStream<R extends Response>(
  response: R,
  payer: BlockPayer,
): R & { readonly stream?: MeteredStreamInfo } {
  const id = response.headers.get(STREAM_HEADER);
  const terms = parseMeterHeader(response.headers.get(METER_HEADER));
  const type = response.headers.get("content-type") ?? "";
  if (!id || !terms || !response.body) return response;
  const sse = /^text\/event-stream\b/i.test(type);
  // A plain body cannot carry requests: only byte units can be counted (and paid ahead) here.
  if (!sse && terms.unit !== "byte") return response;

  let resolveReceipt!: (value: VerifiedStreamReceipt | undefined | Promise<VerifiedStreamReceipt>) => void;
  let checking: Promise<VerifiedStreamReceipt> | undefined;
  const receipt = new Promise<VerifiedStreamReceipt | undefined>((resolve) => (resolveReceipt = resolve));
  const voucherMs: number[] = [];
  const info = {
    id,
    unit: terms.unit,
    unitPrice: terms.unitPrice,
    blockUnits: terms.blockUnits,
    vouchers: 0,
    voucherMs,
    blocks: [] as SettleResponse[],
    events: 0,
    payError: undefined as unknown,
    receipt,
  };
  let covered = terms.blockUnits;
  let paying: Promise<void> | undefined;
  let waiting: VoucherRequest | undefined;
  const answer = (request: VoucherRequest) => {
    // Stale (a block was accepted after the server asked) or given up.
    if (request.covered < covered || info.payError !== undefined) return;
    // One block at a time: a request arriving meanwhile is answered when that one is done.
    if (paying) {
      waiting = request;
      return;
    }
    const asked = performance.now();
    paying = payer
      .pay(request)
      .then(
        (paid) => {
          if (paid.covered > covered) covered = paid.covered;
          info.vouchers += 1;
          info.blocks.push(paid.response);
          voucherMs.push(performance.now() - asked);
        },
        (error: unknown) => {
          info.payError = error;
        },
      )
      .finally(() => {
        paying = undefined;
        const next = waiting;
        waiting = undefined;
        if (next) answer(next);
        afterPay?.();
      });
  };
  let afterPay: (() => void) | undefined;

  /** A plain body's next block, once half of the covered bytes or more have arrived (and after each block paid). */
  const payAhead = () => {
    if (info.events < covered - terms.blockUnits / 2) return;
    answer({
      streamId: id,
      amount: (terms.unitPrice * BigInt(terms.blockUnits)).toString(),
      blockUnits: terms.blockUnits,
      served: info.events,
      covered,
      paused: false,
    });
  };
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const reader = response.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          resolveReceipt(undefined);
          controller.error(error);
          return;
        }
        if (chunk.done) {
          resolveReceipt(checking);
          controller.close();
          return;
        }
        if (!sse) {
          info.events += chunk.value.byteLength;
          afterPay ??= payAhead;
          payAhead();
          controller.enqueue(chunk.value);
          return;
        }
        let out = "";
        for (const event of parser.push(decoder.decode(chunk.value, { stream: true }))) {
          if (event.event === PAYMENT_REQUIRED_EVENT) answer(JSON.parse(event.data) as VoucherRequest);
          else if (event.event === PAYMENT_RECEIPT_EVENT) {
            const final = JSON.parse(event.data) as StreamReceipt;
            const events = info.events;
            checking = payer.check(final, events).then(
              (problem) => ({ receipt: final, valid: problem === undefined, ...(problem ? { problem } : {}) }),
              (error: unknown) => ({ receipt: final, valid: false, problem: String(error) }),
            );
          } else {
            info.events += 1;
            out += event.raw;
          }
        }
        if (out !== "") {
          controller.enqueue(encoder.encode(out));
          return;
        }
      }
    },
    cancel(reason) {
      resolveReceipt(undefined);
      return reader.cancel(reason);
    },
  });
  const wrapped = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  for (const key of Object.keys(response)) {
    Object.defineProperty(wrapped, key, {
      value: (response as unknown as Record<string, unknown>)[key],
      enumerable: true,
    });
  }
  Object.defineProperty(wrapped, "stream", { value: info, enumerable: true });
  return wrapped as unknown as R & { readonly stream?: MeteredStreamInfo };
}
