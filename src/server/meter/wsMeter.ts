import type http from "node:http";
import type { Duplex } from "node:stream";
import WebSocket, { WebSocketServer, type RawData } from "ws";
import { PAYMENT_SIGNATURE_HEADER, SCHEME } from "../../protocol/headers";
import type { StreamEnd, StreamMessage, StreamReceipt } from "../../protocol/stream";
import type { PaidRequest, PaymentGate, Refusal } from "../gate";
import type { ResolvedRoute } from "../routes";
import type { MeteredStream, StreamRegistry } from "./meteredStream";

/** Messages whose JSON `type` starts with this are paychan's own; any other message is the application's. */
export const CONTROL_PREFIX = "paychan.";

/** Largest control message read (a voucher is about 1 KB). */
const MAX_CONTROL_BYTES = 16 * 1024;

/**
 * A metered WebSocket: each message sent to the client costs `units` (1 by default) and goes out
 * only once covered by accepted blocks. The client pays blocks with `paychan.voucher` messages in
 * the socket and is asked for them with `paychan.payment-required`; the stream's receipt is the
 * `paychan.receipt` message sent before the server closes (docs/protocol.md#metered-websockets).
 */
export class MeteredSocket {
  private receipt: StreamReceipt | undefined;
  private readonly listeners: ((data: RawData, isBinary: boolean) => void)[] = [];

  constructor(
    readonly socket: WebSocket,
    private readonly registry: StreamRegistry,
    readonly stream: MeteredStream,
  ) {
    socket.on("message", (data, isBinary) => {
      const control = isBinary ? undefined : controlMessage(data);
      if (control) void this.control(control);
      else for (const listener of this.listeners) listener(data, isBinary);
    });
    socket.on("close", () => {
      if (!this.receipt) this.receipt = this.registry.close(this.stream, "client_closed");
    });
  }

  /** Application messages from the client (paychan's control messages are not passed on). */
  onMessage(listener: (data: RawData, isBinary: boolean) => void): void {
    this.listeners.push(listener);
  }

  get ended(): boolean {
    return this.receipt !== undefined;
  }

  /**
   * Sends one message costing `units` once covered (waiting, paused, for the next block when
   * needed). False when it was not sent: the stream has ended (then no more may be sent).
   */
  async send(data: string | Buffer, units = 1, binary = false): Promise<boolean> {
    if (this.receipt) return false;
    if (units > 0 && !(await this.stream.take(units))) {
      if (!this.receipt) this.end("voucher_timeout");
      return false;
    }
    if (this.receipt || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(data, { binary });
    return true;
  }

  /** Ends the stream: sends the receipt, then closes the socket (1000, or 1008 for a missing voucher). */
  end(ended: StreamEnd = "complete"): StreamReceipt {
    if (this.receipt) return this.receipt;
    const receipt = this.registry.close(this.stream, ended);
    this.receipt = receipt;
    if (this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "paychan.receipt", receipt } satisfies StreamMessage));
      this.socket.close(ended === "voucher_timeout" ? 1008 : 1000, ended);
    }
    return receipt;
  }

  private async control(message: { type: string; payment?: unknown }): Promise<void> {
    if (message.type !== "paychan.voucher" || typeof message.payment !== "string") {
      this.reply({ type: "paychan.voucher-refused", error: "invalid_payload" });
      return;
    }
    const answer = await this.registry.pay(this.stream.id, message.payment);
    this.reply(
      answer.ok
        ? { type: "paychan.voucher-accepted", response: answer.response, covered: answer.covered }
        : { type: "paychan.voucher-refused", error: answer.error },
    );
  }

  private reply(message: StreamMessage): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }
}

function controlMessage(data: RawData): { type: string; payment?: unknown } | undefined {
  const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
  if (size > MAX_CONTROL_BYTES) return undefined;
  const text = Array.isArray(data)
    ? Buffer.concat(data).toString("utf8")
    : Buffer.from(data as Buffer).toString("utf8");
  if (!text.startsWith("{") || !text.includes(`"${CONTROL_PREFIX}`)) return undefined;
  try {
    const value = JSON.parse(text) as { type?: unknown };
    return typeof value.type === "string" && value.type.startsWith(CONTROL_PREFIX)
      ? (value as { type: string })
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Accepts metered WebSocket upgrades: the upgrade request pays the first block with
 * PAYMENT-SIGNATURE, exactly as an HTTP request to the route would (a refusal is answered as
 * an HTTP 402 with PAYMENT-REQUIRED and the socket closed); once its voucher is durable the
 * socket opens as a {@link MeteredSocket}.
 */
export class WebSocketMeter {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });

  constructor(
    private readonly gate: PaymentGate,
    private readonly registry: StreamRegistry,
  ) {}

  /**
   * Handles an `upgrade` of a request priced by `route` (metered), at `url` (its absolute
   * resource URL); `onOpen` gets the socket once the first block is durable.
   */
  async upgrade(
    req: http.IncomingMessage,
    socket: Duplex,
    head: Buffer,
    route: ResolvedRoute,
    url: string,
    onOpen: (metered: MeteredSocket) => void,
  ): Promise<void> {
    const meter = route.meter;
    const header = req.headers[PAYMENT_SIGNATURE_HEADER];
    const request: PaidRequest = {
      method: "GET",
      pathAndQuery: req.url ?? "/",
      url,
      paymentHeader: Array.isArray(header) ? header[0] : header,
      price: route.price,
      pricing: route.pricing,
      ...(route.description ? { description: route.description } : {}),
    };
    if (!meter) throw new Error("WebSocketMeter.upgrade: the route is not metered");
    let result = await this.gate.authorize(request);
    if (result.ok && result.retry) result = this.gate.refuse(request, "voucher_reused");
    if (!result.ok) {
      refuseUpgrade(socket, result);
      return;
    }
    if (result.scheme !== SCHEME) {
      // An `exact` transfer is final and cannot be charged by use: streams take vouchers only.
      refuseUpgrade(socket, this.gate.refuse(request, "unsupported_scheme"));
      return;
    }
    const payment = result;
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const opened: { socket?: MeteredSocket } = {};
      const stream = this.registry.open(request, meter, payment, (need) => {
        if (ws.readyState === WebSocket.OPEN && !opened.socket?.ended) {
          ws.send(JSON.stringify({ type: "paychan.payment-required", request: need } satisfies StreamMessage));
        }
      });
      if (!stream) {
        ws.close(1008, "unsupported_scheme");
        return;
      }
      const metered = new MeteredSocket(ws, this.registry, stream);
      opened.socket = metered;
      // The first block's PAYMENT-RESPONSE, as an HTTP response would carry it.
      ws.send(
        JSON.stringify({
          type: "paychan.voucher-accepted",
          response: payment.response(),
          covered: stream.unitsCovered,
        } satisfies StreamMessage),
      );
      onOpen(metered);
    });
  }

  close(): void {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
  }
}

/** Answers a refused upgrade with the refusal as an HTTP response, then closes the socket. */
export function refuseUpgrade(socket: Duplex, refusal: Refusal): void {
  const body = JSON.stringify(refusal.body);
  const headers = Object.entries({ ...refusal.headers, "content-type": "application/json; charset=utf-8" })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  socket.end(
    `HTTP/1.1 ${refusal.status} ${refusal.status === 402 ? "Payment Required" : "Service Unavailable"}\r\n` +
      `${headers}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Relays a metered socket to an upstream WebSocket: the client's application messages go up
 * unmetered, the upstream's come down metered one unit each, and either side closing ends the
 * stream (with the receipt when the client is still there).
 */
export function relayToUpstream(metered: MeteredSocket, upstreamUrl: string, headers: Record<string, string>): void {
  const upstream = new WebSocket(upstreamUrl, { headers });
  const queue: { data: RawData; binary: boolean }[] = [];
  let sending = false;
  const pump = async () => {
    if (sending) return;
    sending = true;
    while (queue.length > 0) {
      const next = queue.shift()!;
      const data = Array.isArray(next.data) ? Buffer.concat(next.data) : Buffer.from(next.data as Buffer);
      if (!(await metered.send(next.binary ? data : data.toString("utf8"), 1, next.binary))) {
        upstream.terminate();
        queue.length = 0;
        break;
      }
    }
    sending = false;
    if (upstreamClosed && !metered.ended) metered.end("complete");
  };
  let upstreamClosed = false;
  upstream.on("message", (data, binary) => {
    queue.push({ data, binary });
    // Hold the upstream while the client's coverage is short (backpressure through TCP).
    if (queue.length > 64) upstream.pause();
    void pump().then(() => upstream.resume());
  });
  upstream.on("close", () => {
    upstreamClosed = true;
    if (!sending && !metered.ended) metered.end("complete");
  });
  upstream.on("error", () => {
    upstreamClosed = true;
    if (!sending && !metered.ended) metered.end("upstream_error");
  });
  const early: { data: RawData; binary: boolean }[] = [];
  upstream.on("open", () => {
    for (const m of early.splice(0)) upstream.send(m.data as Buffer, { binary: m.binary });
  });
  metered.onMessage((data, binary) => {
    if (upstream.readyState === WebSocket.OPEN) upstream.send(data as Buffer, { binary });
    else if (upstream.readyState === WebSocket.CONNECTING) early.push({ data, binary });
  });
  metered.socket.on("close", () => upstream.terminate());
}
