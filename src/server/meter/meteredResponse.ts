import type { Response } from "express";
import type { PaidRequest, Payment } from "../gate";
import type { ResolvedMeter } from "../routes";
import { BodyMeter, type BodyFraming } from "./bodyMeter";
import type { StreamRegistry } from "./meteredStream";

const METER_KEY = "paychanMeter";

interface PendingMeter {
  readonly registry: StreamRegistry;
  readonly request: PaidRequest;
  readonly meter: ResolvedMeter;
  readonly payment: Payment;
  body?: BodyMeter;
}

/** Records, for {@link meteredResponse}, that the paywall accepted the first block of a metered route. */
export function holdMeter(res: Response, pending: Omit<PendingMeter, "body">): void {
  res.locals[METER_KEY] = { ...pending };
}

/**
 * The metered stream of a request that went through `paywall` on a metered route: opens it (the
 * response head goes out) on the first call. Send each event with `send(text, units)`, which
 * resolves once the units are covered (false: the stream has ended, stop), and finish with
 * `end()`, which writes the receipt. Undefined on a route that is not metered.
 *
 * @example
 * app.get("/completions", async (req, res) => {
 *   const stream = meteredResponse(res)!;
 *   for await (const token of model(req.query.q)) {
 *     if (!(await stream.send(`data: ${token}\n\n`, 1))) return;
 *   }
 *   stream.end();
 * });
 */
export function meteredResponse(res: Response, framing: BodyFraming = "sse"): BodyMeter | undefined {
  const pending = res.locals[METER_KEY] as PendingMeter | undefined;
  if (!pending) return undefined;
  pending.body ??= BodyMeter.open(res, pending.registry, pending, framing);
  return pending.body;
}
