import type http from "node:http";
import { SseParser, USAGE_EVENT } from "../../protocol/stream";
import type { Logger } from "../../shared/log";
import type { MeterUnit } from "../../shared/config";
import type { BodyMeter } from "./bodyMeter";

/** Whether a response's content type is a server-sent event stream. */
export function isEventStream(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return typeof value === "string" && /^\s*text\/event-stream\b/i.test(value);
}

/**
 * Copies an upstream's body through `meter`, unit by unit: nothing goes to the client before it
 * is covered. An event stream is metered per event (`chunk`), per byte, or per token: the
 * upstream then follows the events it sent with `event: paychan-usage` / `data: {"units": n}`,
 * and the proxy holds those events until their report arrives, sends them once the n units are
 * covered, and never forwards the report (events left without a report at the end are dropped).
 * Any other body is metered per chunk as read or per byte. Ends the stream with its receipt.
 */
export async function meterUpstream(
  upstreamRes: http.IncomingMessage,
  meter: BodyMeter,
  unit: MeterUnit,
  log: Logger,
): Promise<void> {
  let failed = false;
  upstreamRes.on("aborted", () => (failed = true));
  try {
    if (meter.framing === "sse") {
      upstreamRes.setEncoding("utf8");
      const parser = new SseParser();
      let held = "";
      for await (const text of upstreamRes as AsyncIterable<string>) {
        for (const event of parser.push(text)) {
          if (event.event === USAGE_EVENT) {
            if (unit !== "token") continue;
            const units = usageUnits(event.data);
            if (units === undefined) {
              log.warn("invalid paychan-usage event from upstream; its events are dropped", { data: event.data });
              held = "";
              continue;
            }
            const ok = await meter.send(held, units);
            held = "";
            if (!ok) return;
          } else if (unit === "token") held += event.raw;
          else if (!(await meter.send(event.raw, unit === "byte" ? Buffer.byteLength(event.raw) : 1))) return;
        }
      }
      if (held !== "") log.warn("upstream events without a paychan-usage report were not sent", { bytes: held.length });
    } else {
      for await (const chunk of upstreamRes as AsyncIterable<Buffer>) {
        const ok = unit === "byte" ? await meter.sendBytes(chunk) : await meter.send(chunk, 1);
        if (!ok) return;
      }
    }
  } catch {
    failed = true;
  } finally {
    if (!meter.ended) meter.end(failed || !upstreamRes.complete ? "upstream_error" : "complete");
    if (!upstreamRes.complete) upstreamRes.destroy();
  }
}

function usageUnits(data: string): number | undefined {
  try {
    const units = (JSON.parse(data) as { units?: unknown }).units;
    return typeof units === "number" && Number.isSafeInteger(units) && units >= 0 ? units : undefined;
  } catch {
    return undefined;
  }
}
