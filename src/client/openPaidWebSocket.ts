import WebSocket, { type RawData } from "ws";
import {
  decodeHeader,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type PaymentRequired,
} from "../protocol/headers";
import type { StreamMessage, VoucherRequest } from "../protocol/stream";
import type { BlockOutcome, BlockPayer, VerifiedStreamReceipt } from "./consumeMeteredStream";

/**
 * A metered WebSocket paid through a channel (docs/protocol.md#metered-websockets): the upgrade
 * request carries the first block's voucher in PAYMENT-SIGNATURE, each `paychan.payment-required`
 * message is answered with a `paychan.voucher` message (one at a time, within the paying fetch's
 * limits), and the `paychan.receipt` message before the server closes is checked. Application
 * messages reach {@link onMessage}; paychan's own never do. Made by `PayingFetch.openWebSocket`.
 */
export class PaidWebSocket {
  private socket: WebSocket | undefined;
  private payer: BlockPayer | undefined;
  private readonly pending: ((outcome: BlockOutcome) => void)[] = [];
  private readonly listeners: ((data: RawData, isBinary: boolean) => void)[] = [];
  private paying: Promise<void> | undefined;
  private waiting: VoucherRequest | undefined;
  private covered = 0;
  private resolveClosed!: (value: { code: number; receipt: VerifiedStreamReceipt | undefined }) => void;
  private receipt: Promise<VerifiedStreamReceipt> | undefined;
  /** Application messages received. */
  messages = 0;
  /** Mid-stream vouchers accepted (the first block, paid in the upgrade, not counted). */
  vouchers = 0;
  /** How long each accepted mid-stream voucher took, from the server's request to its acceptance (ms). */
  readonly voucherMs: number[] = [];
  /** Why paying stopped, when it did: the server then pauses and ends the stream. */
  payError: unknown;
  /** Resolves when the socket has closed, with the checked receipt when the server sent one. */
  readonly closed: Promise<{ code: number; receipt: VerifiedStreamReceipt | undefined }>;

  constructor(readonly url: string) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
  }

  /** Application messages from the server. */
  onMessage(listener: (data: RawData, isBinary: boolean) => void): void {
    this.listeners.push(listener);
  }

  /** Sends an application message to the server. */
  send(data: string | Buffer): void {
    this.socket?.send(data);
  }

  /** Closes the socket from this side: the stream is charged for what was sent before. */
  close(): void {
    this.socket?.close(1000);
  }

  /** Connects, paying the first block of `amount` with `payer` (called once by openWebSocket). */
  async open(payer: BlockPayer, amount: string): Promise<void> {
    this.payer = payer;
    await payer.pay({ streamId: "", amount, blockUnits: 0, served: 0, covered: 0, paused: false });
  }

  /**
   * Delivers one block's voucher: the first opens the socket with it (a refused upgrade answers
   * with its 402), later ones are `paychan.voucher` messages answered in order.
   */
  deliver(header: string): Promise<BlockOutcome> {
    if (this.socket) {
      return new Promise((resolve) => {
        this.pending.push(resolve);
        this.socket!.send(JSON.stringify({ type: "paychan.voucher", payment: header } satisfies StreamMessage));
      });
    }
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url, { headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      this.socket = socket;
      this.pending.push(resolve);
      socket.on("unexpected-response", (_req, res) => {
        const header = res.headers[PAYMENT_REQUIRED_HEADER];
        let required: PaymentRequired | undefined;
        try {
          required = typeof header === "string" ? decodeHeader<PaymentRequired>(header) : undefined;
        } catch {
          required = undefined;
        }
        res.resume();
        this.socket = undefined;
        this.pending.length = 0;
        resolve({ status: res.statusCode ?? 0, ...(required ? { required } : {}) });
      });
      socket.on("error", (error) => {
        if (this.pending.length > 0 && this.covered === 0) {
          this.pending.length = 0;
          reject(error);
        }
      });
      socket.on("message", (data, isBinary) => this.message(data, isBinary));
      socket.on("close", (code) => {
        for (const waiting of this.pending.splice(0)) waiting({ status: 0, error: "closed" });
        void (this.receipt ?? Promise.resolve(undefined)).then((receipt) => this.resolveClosed({ code, receipt }));
      });
    });
  }

  private message(data: RawData, isBinary: boolean): void {
    const control = isBinary ? undefined : parseControl(data);
    if (!control) {
      this.messages += 1;
      for (const listener of this.listeners) listener(data, isBinary);
      return;
    }
    switch (control.type) {
      case "paychan.voucher-accepted":
        if (control.covered > this.covered) this.covered = control.covered;
        this.pending.shift()?.({ paid: control.response, covered: control.covered });
        break;
      case "paychan.voucher-refused":
        this.pending.shift()?.({ status: 402, error: control.error });
        break;
      case "paychan.payment-required":
        this.answer(control.request);
        break;
      case "paychan.receipt": {
        const final = control.receipt;
        const messages = this.messages;
        this.receipt = (this.payer?.check(final, messages) ?? Promise.resolve("no payer")).then(
          (problem) => ({ receipt: final, valid: problem === undefined, ...(problem ? { problem } : {}) }),
          (error: unknown) => ({ receipt: final, valid: false, problem: String(error) }),
        );
        break;
      }
      default:
        break;
    }
  }

  private answer(request: VoucherRequest): void {
    if (request.covered < this.covered || this.payError !== undefined || !this.payer) return;
    // One block at a time: a request arriving meanwhile is answered when that one is done.
    if (this.paying) {
      this.waiting = request;
      return;
    }
    const asked = performance.now();
    this.paying = this.payer
      .pay(request)
      .then(
        () => {
          this.vouchers += 1;
          this.voucherMs.push(performance.now() - asked);
        },
        (error: unknown) => {
          this.payError = error;
        },
      )
      .finally(() => {
        this.paying = undefined;
        const next = this.waiting;
        this.waiting = undefined;
        if (next) this.answer(next);
      });
  }
}

function parseControl(data: RawData): Exclude<StreamMessage, { type: "paychan.voucher" }> | undefined {
  const text = Array.isArray(data)
    ? Buffer.concat(data).toString("utf8")
    : Buffer.from(data as Buffer).toString("utf8");
  if (!text.startsWith("{") || !text.includes('"paychan.')) return undefined;
  try {
    const value = JSON.parse(text) as { type?: unknown };
    return typeof value.type === "string" && value.type.startsWith("paychan.")
      ? (value as Exclude<StreamMessage, { type: "paychan.voucher" }>)
      : undefined;
  } catch {
    return undefined;
  }
}
