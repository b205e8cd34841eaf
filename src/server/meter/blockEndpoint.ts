import type http from "node:http";
import { encodeHeader, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER } from "../../protocol/headers";
import { STREAM_HEADER } from "../../protocol/stream";
import type { StreamRegistry } from "./meteredStream";

/**
 * Whether `req` is a mid-stream voucher: a POST carrying `paychan-stream` (the stream's id) and
 * PAYMENT-SIGNATURE, sent to any URL of the server (paychan's client uses the stream's own).
 */
export function isBlockPayment(req: http.IncomingMessage): boolean {
  return req.method === "POST" && typeof req.headers[STREAM_HEADER] === "string";
}

/**
 * Answers a mid-stream voucher: 200 with PAYMENT-RESPONSE (the block's receipt) and
 * `{"covered": units}` once the voucher is durable and the stream may go on; the gate's refusal
 * (402 or 503 with PAYMENT-REQUIRED) otherwise; 404 `unknown_stream` for a stream that has ended
 * or never existed here.
 */
export async function answerBlockPayment(
  registry: StreamRegistry,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  req.resume();
  const header = req.headers[PAYMENT_SIGNATURE_HEADER];
  const answer = await registry.pay(String(req.headers[STREAM_HEADER]), Array.isArray(header) ? header[0] : header);
  const headers: Record<string, string> = {
    "content-type": "application/json; charset=utf-8",
    "cache-control": "no-store",
    "access-control-expose-headers": "payment-required, payment-response",
  };
  let body: unknown;
  if (answer.ok) {
    headers[PAYMENT_RESPONSE_HEADER] = encodeHeader(answer.response);
    body = { covered: answer.covered };
  } else if (answer.refusal) {
    Object.assign(headers, answer.refusal.headers);
    body = answer.refusal.body;
  } else body = { error: answer.error };
  const text = JSON.stringify(body);
  res.writeHead(answer.status, { ...headers, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
