import type { NextFunction, Request, RequestHandler, Response } from "express";
import { PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER } from "../protocol/headers";
import type { Payment, PaymentGate } from "./gate";
import { PaywallPage, wantsPaywallPage } from "./paywallPage";
import type { RouteTable } from "../shared/config";
import { RouteMatcher, type ResolvedRoute } from "./routes";
import { StreamRegistry } from "./meter/meteredStream";
import { answerBlockPayment, isBlockPayment } from "./meter/blockEndpoint";
import { holdMeter } from "./meter/meteredResponse";

export interface PaywallOptions {
  readonly gate: PaymentGate;
  /** A route table, or a function pricing each request (return null or undefined for free). */
  readonly routes: RouteTable | ((req: Request) => ResolvedRoute | null | undefined);
  /** Token decimals, for "$" prices in a route table. */
  readonly decimals: number;
  /**
   * The HTML paywall shown to browsers on a 402, with its script and CSP report endpoint
   * (served under /.paychan/); default: a page with paychan's built script. null disables it.
   */
  readonly page?: PaywallPage | null;
}

const PAYMENT_KEY = "paychanPayment";

/**
 * Express middleware: answers unpaid requests to priced routes with 402 and the payment terms,
 * and lets a request through only once its voucher is verified and durable. The paid response
 * gets a PAYMENT-RESPONSE header with the charge and a signed receipt.
 *
 * @example
 * app.use(paywall({ gate, decimals: 6, routes: { "GET /weather": "$0.001" } }));
 */
export function paywall(options: PaywallOptions): RequestHandler {
  const { gate } = options;
  const resolve =
    typeof options.routes === "function"
      ? options.routes
      : (
          (matcher: RouteMatcher) => (req: Request) =>
            matcher.match(req.method, req.path)
        )(new RouteMatcher(options.routes, options.decimals));
  const page = options.page === undefined ? new PaywallPage() : options.page;
  const streams = new StreamRegistry(gate);

  return (req: Request, res: Response, next: NextFunction): void => {
    if (page?.serve(req.method, req.path, req, res)) return;
    if (isBlockPayment(req)) {
      answerBlockPayment(streams, req, res).catch(next);
      return;
    }
    let route: ResolvedRoute | null | undefined;
    try {
      route = resolve(req);
    } catch (error) {
      next(error);
      return;
    }
    if (!route) {
      next();
      return;
    }
    const header = req.headers[PAYMENT_SIGNATURE_HEADER];
    const paidRequest = {
      method: req.method,
      pathAndQuery: req.originalUrl,
      url: `${req.protocol}://${req.get("host") ?? "localhost"}${req.originalUrl}`,
      paymentHeader: Array.isArray(header) ? header[0] : header,
      price: route.price,
      pricing: route.pricing,
      description: route.description,
    };
    const meter = route.meter;
    gate.authorize(paidRequest).then((answer) => {
      // A metered stream starts with a fresh block; a resent one would pay for a second stream.
      const result = meter && answer.ok && answer.retry ? gate.refuse(paidRequest, "voucher_reused") : answer;
      res.setHeader("access-control-expose-headers", "payment-required, payment-response");
      if (!result.ok) {
        if (page && result.status === 402 && wantsPaywallPage(req.method, req.headers.accept, header !== undefined)) {
          const rendered = page.render(result.body, req.get("sec-fetch-site"));
          res.status(402).set(result.headers).set(rendered.headers).send(rendered.html);
          return;
        }
        res.status(result.status).set(result.headers).json(result.body);
        return;
      }
      res.locals[PAYMENT_KEY] = result;
      if (meter) holdMeter(res, { registry: streams, request: paidRequest, meter, payment: result });
      attachResponseHeader(res, result);
      next();
    }, next);
  };
}

/** The payment of a request that went through {@link paywall}; use it to charge less on "upto" routes. */
export function paymentOf(res: Response): Payment | undefined {
  return res.locals[PAYMENT_KEY] as Payment | undefined;
}

/** Adds PAYMENT-RESPONSE just before the headers are written, so it reflects the final charge. */
function attachResponseHeader(res: Response, payment: Payment): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: Response, ...args: unknown[]) {
    if (!this.headersSent) this.setHeader(PAYMENT_RESPONSE_HEADER, payment.responseHeader());
    return (writeHead as (...a: unknown[]) => Response).apply(this, args);
  } as typeof res.writeHead;
}
