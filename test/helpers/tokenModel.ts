import type http from "node:http";

/**
 * Answers `res` as an LLM-like model streaming `total` tokens over server-sent events: events of
 * 1 to `maxPerEvent` tokens (`data: {"tokens": [...]}`), each followed by the `paychan-usage`
 * report of its token count, one every `delayMs` (0: as fast as the loop turns).
 */
export function streamTokens(res: http.ServerResponse, total: number, delayMs: number, maxPerEvent = 3): void {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
  let sent = 0;
  let closed = false;
  res.on("close", () => (closed = true));
  const next = () => {
    if (closed) return;
    if (sent >= total) {
      res.end();
      return;
    }
    const n = Math.min(1 + (sent % maxPerEvent), total - sent);
    const tokens = Array.from({ length: n }, (_, i) => `tok${sent + i}`);
    sent += n;
    res.write(`data: ${JSON.stringify({ tokens })}\n\nevent: paychan-usage\ndata: {"units":${n}}\n\n`);
    if (delayMs > 0) setTimeout(next, delayMs);
    else setImmediate(next);
  };
  next();
}
