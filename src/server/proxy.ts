import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import {
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  SCHEME,
  channelIdHex,
  type Pricing,
} from "../protocol/headers";
import type { ForwardBeforeDurable, UnmatchedPolicy } from "../shared/config";
import type { PaidRequest, Payment, PaymentGate, Refusal } from "./gate";
import { silentLogger, type Logger } from "../shared/log";
import type { PaymentMetrics, RequestOutcome } from "./metrics";
import { PaywallPage, wantsPaywallPage } from "./paywallPage";
import type { RoutePrice, RouteTable } from "../shared/config";
import { RouteMatcher, type ResolvedMeter, type ResolvedRoute } from "./routes";
import { StreamRegistry } from "./meter/meteredStream";
import { BodyMeter } from "./meter/bodyMeter";
import { answerBlockPayment, isBlockPayment } from "./meter/blockEndpoint";
import { isEventStream, meterUpstream } from "./meter/meterUpstream";
import { relayToUpstream, WebSocketMeter } from "./meter/wsMeter";

/**
 * A standalone paying reverse proxy (node:http, no framework) in front of any HTTP API.
 *
 * For each request: built-in endpoints first (health, metrics, the gasless relay), then the route
 * table. Free routes stream straight through. Priced routes go through {@link PaymentGate.authorize},
 * and the upstream's response is streamed back with a PAYMENT-RESPONSE header (charge + signed
 * receipt) only once the voucher is verified AND durable. A safe request (GET, HEAD, OPTIONS) is
 * forwarded as soon as its voucher is verified, while the store's fsync runs, and its response is
 * held until the fsync returns ({@link ProxyOptions.forwardBeforeDurable}); any other request is
 * forwarded only once its voucher is durable. A refused payment gets its status,
 * PAYMENT-REQUIRED and the same terms as a JSON body.
 *
 * Usage-based ("upto") routes: the upstream reports what the request actually cost in the
 * response header `x-paychan-charge` (decimal atomic units, at most the route's price); the proxy
 * charges that and strips the header. It also tells the upstream who paid and the most it may
 * charge through `x-paychan-*` request headers (any a client sends are removed first).
 */

/** Response header in which the upstream reports the actual charge of an "upto" request. */
export const CHARGE_HEADER = "x-paychan-charge";
/** Request headers the proxy sets for the upstream on paid requests. */
export const PAYER_HEADER = "x-paychan-payer";
export const CHANNEL_HEADER = "x-paychan-channel";
export const PRICE_HEADER = "x-paychan-price";
export const PRICING_HEADER = "x-paychan-pricing";

const EXPOSE_HEADERS = "payment-required, payment-response";

/**
 * RFC 9110 §9.2.1 safe methods: the only ones the upstream may run before the payment is
 * durable. Should the store then fail, the client gets 503 and nothing the upstream did; work
 * that changes state must not happen for a payment that was never stored.
 */
const SAFE_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS"]);

/** RFC 9110 §7.6.1 hop-by-hop headers, never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** What /healthz reports; `ok: false` answers 503 so load balancers take the instance out. */
export interface HealthReport {
  readonly ok: boolean;
  readonly [field: string]: unknown;
}

/** Handles the gasless relay endpoints (see relay.ts); the proxy only routes to it. */
export interface RelayEndpoint {
  /** Base path; the proxy serves `<path>/open` and `<path>/topup`. */
  readonly path: string;
  handle(operation: "open" | "topup", req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
}

export interface ProxyOptions {
  readonly gate: PaymentGate;
  /** The route table (as in the config file). Matching ignores case and a trailing slash. */
  readonly routes: RouteTable;
  /** Token decimals, for "$" prices. */
  readonly decimals: number;
  /** Base URL of the upstream API; its path is prefixed to every forwarded path. */
  readonly upstream: URL;
  /** Requests no route matches: "reject" (404, the default) or "free" (forwarded unpaid). */
  readonly unmatchedRoutes?: UnmatchedPolicy;
  /** Node's maxHeaderSize for incoming requests, bytes. Default 16 KiB. */
  readonly maxHeaderBytes?: number;
  /** Upstream idle timeout (no bytes for this long) in ms. Default 30 s. */
  readonly upstreamTimeoutMs?: number;
  /**
   * "safe" (default): paid GET, HEAD and OPTIONS requests are forwarded once the voucher is
   * verified, while the store makes it durable, so the fsync overlaps the upstream's work; the
   * response is held until the fsync returns. "never": every paid request waits for it first.
   */
  readonly forwardBeforeDurable?: ForwardBeforeDurable;
  /** Public base URL of this server, for `resource.url`; default `http://<Host header>`. */
  readonly publicUrl?: string;
  /** null disables; default "/healthz". */
  readonly healthPath?: string | null;
  /** null disables; default "/metrics". */
  readonly metricsPath?: string | null;
  readonly health?: () => HealthReport;
  readonly metrics?: PaymentMetrics;
  readonly relay?: RelayEndpoint;
  /** The HTML paywall for browsers (and its script and CSP report endpoint); null disables it. */
  readonly paywallPage?: PaywallPage | null;
  readonly logger?: Logger;
}

/** Where a request goes: the path to forward, its query, and the form routes are matched on. */
export interface RequestTarget {
  /** The path with dot segments resolved and repeated slashes collapsed; forwarded as is. */
  readonly forwardPath: string;
  /** "" or "?..." exactly as received. */
  readonly query: string;
  /**
   * Percent-decoded, backslashes as slashes, dot segments resolved, lowercase, no trailing slash:
   * every spelling an upstream might route to the same handler maps to one string, so no
   * spelling of a priced path can pass as a free one.
   */
  readonly matchPath: string;
}

/**
 * Parses an origin-form request target (`/path?query`). Returns undefined for anything else
 * (absolute-form, `*`, bad percent-encoding, control characters): the caller answers 400.
 */
export function parseRequestTarget(rawUrl: string): RequestTarget | undefined {
  if (!rawUrl.startsWith("/")) return undefined;
  const hash = rawUrl.indexOf("#");
  const url = hash === -1 ? rawUrl : rawUrl.slice(0, hash);
  const q = url.indexOf("?");
  const rawPath = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? "" : url.slice(q);

  const forward = resolveSegments(rawPath.split("/"), (s) => s.replace(/%2e/gi, "."));
  const trailing = rawPath.endsWith("/") && forward.length > 0;
  const forwardPath = `/${forward.join("/")}${trailing ? "/" : ""}`;

  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return undefined;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(decoded)) return undefined;
  const match = resolveSegments(decoded.replace(/\\/g, "/").split("/"), (s) => s);
  return { forwardPath, query, matchPath: `/${match.join("/")}`.toLowerCase() };
}

/** RFC 3986 §5.2.4 on segments: drops empty and "." segments, ".." pops (never above the root). */
function resolveSegments(segments: readonly string[], asDot: (segment: string) => string): string[] {
  const out: string[] = [];
  for (const segment of segments) {
    if (segment === "") continue;
    const dot = asDot(segment);
    if (dot === ".") continue;
    if (dot === "..") out.pop();
    else out.push(segment);
  }
  return out;
}

/** The route table rewritten for {@link RequestTarget.matchPath}: lowercase paths, no trailing slash. */
export function normalizeRouteTable(table: RouteTable): RouteTable {
  const out: Record<string, RoutePrice> = {};
  for (const [key, value] of Object.entries(table)) {
    const match = /^(?:([A-Z]+)\s+)?(\/\S*)$/.exec(key.trim());
    if (!match) {
      out[key] = value; // RouteMatcher reports the bad key with its own message.
      continue;
    }
    let p = match[2].toLowerCase();
    if (p.length > 1 && p.endsWith("/") && !p.endsWith("/*")) p = p.replace(/\/+$/, "") || "/";
    out[match[1] ? `${match[1]} ${p}` : p] = value;
  }
  return out;
}

/** Parses `x-paychan-charge`: decimal atomic units in [0, max]; undefined when absent or invalid. */
export function parseChargeHeader(value: string | string[] | undefined, max: bigint): bigint | undefined {
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  if (!/^(0|[1-9][0-9]{0,28})$/.test(text)) return undefined;
  const charge = BigInt(text);
  return charge <= max ? charge : undefined;
}

/** A paid request on its way to the upstream. */
interface PaidRoute {
  readonly request: PaidRequest;
  readonly payment: Payment;
  readonly price: bigint;
  readonly pricing: Pricing;
  /** A metered route's terms: the response is a metered stream (docs/protocol.md#metered-streams). */
  readonly meter?: ResolvedMeter;
}

class UpstreamTimeoutError extends Error {
  constructor() {
    super("upstream timed out");
    this.name = "UpstreamTimeoutError";
  }
}

/** The proxy's HTTP server and its lifecycle. */
export class PaymentProxy {
  readonly server: http.Server;
  private readonly matcher: RouteMatcher;
  private readonly agent: http.Agent;
  private readonly upstreamBase: string;
  private readonly request: typeof http.request;
  private readonly log: Logger;
  private readonly unmatched: UnmatchedPolicy;
  private readonly timeoutMs: number;
  private readonly earlyMethods: ReadonlySet<string>;
  private readonly healthPath: string | null;
  private readonly metricsPath: string | null;
  private readonly relayOpen: string | undefined;
  private readonly relayTopUp: string | undefined;
  private readonly page: PaywallPage | null;
  /** Live metered streams, and the mid-stream voucher path. */
  readonly streams: StreamRegistry;
  private readonly sockets: WebSocketMeter;
  private inflight = 0;
  private draining = false;
  private drained: (() => void) | undefined;

  constructor(private readonly options: ProxyOptions) {
    this.matcher = new RouteMatcher(normalizeRouteTable(options.routes), options.decimals);
    this.streams = new StreamRegistry(options.gate);
    this.sockets = new WebSocketMeter(options.gate, this.streams);
    this.log = options.logger ?? silentLogger;
    this.unmatched = options.unmatchedRoutes ?? "reject";
    this.timeoutMs = options.upstreamTimeoutMs ?? 30_000;
    this.earlyMethods = options.forwardBeforeDurable === "never" ? new Set() : SAFE_METHODS;
    this.healthPath = options.healthPath === undefined ? "/healthz" : options.healthPath;
    this.metricsPath = options.metricsPath === undefined ? "/metrics" : options.metricsPath;
    this.relayOpen = options.relay && `${options.relay.path}/open`;
    this.relayTopUp = options.relay && `${options.relay.path}/topup`;
    this.page = options.paywallPage === undefined ? new PaywallPage({ logger: this.log }) : options.paywallPage;
    const secure = options.upstream.protocol === "https:";
    this.request = secure ? https.request : http.request;
    // Keep-alive to the upstream: a paid request must not also pay a TCP (or TLS) handshake.
    const agentOptions: http.AgentOptions = {
      keepAlive: true,
      maxSockets: 512,
      maxFreeSockets: 64,
      scheduling: "lifo",
    };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.upstreamBase = options.upstream.pathname.replace(/\/+$/, "");
    this.server = http.createServer(
      {
        maxHeaderSize: options.maxHeaderBytes ?? 16 * 1024,
        headersTimeout: 20_000,
        keepAliveTimeout: 5_000,
      },
      (req, res) => this.handle(req, res),
    );
    this.server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => this.clientError(error, socket));
    this.server.on("upgrade", (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
      this.upgrade(req, socket, head).catch((error: unknown) => {
        this.log.error("websocket upgrade failed", { err: error, url: req.url });
        socket.destroy();
      });
    });
  }

  /**
   * A WebSocket upgrade: on a metered route, paid like a request and relayed to the upstream's
   * WebSocket at the same path, each upstream message metered (see wsMeter.ts); refused otherwise.
   */
  private async upgrade(req: http.IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const target = parseRequestTarget(req.url ?? "");
    const route = target && this.matcher.match("GET", target.matchPath);
    if (!target || !route?.meter) {
      socket.end("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const upstream = this.options.upstream;
    const url = `${upstream.protocol === "https:" ? "wss:" : "ws:"}//${upstream.host}${this.upstreamBase}${target.forwardPath}${target.query}`;
    await this.sockets.upgrade(req, socket, head, route, this.resourceUrl(req, target), (metered) => {
      const paid = metered.stream.request;
      relayToUpstream(metered, url, {
        [PRICE_HEADER]: paid.price.toString(),
        [PRICING_HEADER]: paid.pricing,
      });
    });
  }

  /** Starts listening; resolves with the bound address. */
  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once("error", onError);
      this.server.listen(port, host, () => {
        this.server.off("error", onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** The bound address, once listening. */
  address(): AddressInfo | undefined {
    const address = this.server.address();
    return address && typeof address === "object" ? address : undefined;
  }

  /**
   * Stops accepting connections, lets in-flight requests finish for up to `graceMs`, then cuts
   * what is left. The vouchers of paid requests in flight are durable or queued for the store,
   * which the server closes after the proxy and which syncs what is queued before it closes, so
   * cutting them loses no money, only the response.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.draining = true;
    this.sockets.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => (this.drained = resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    this.server.closeAllConnections();
    await closed;
    this.agent.destroy();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const started = process.hrtime.bigint();
    this.inflight++;
    // During shutdown every response closes its connection, so clients move to another instance.
    if (this.draining) res.setHeader("connection", "close");
    res.once("close", () => {
      if (--this.inflight === 0 && this.drained) this.drained();
    });
    this.dispatch(req, res, started).catch((error: unknown) => {
      // Reaching this is a bug: dispatch answers every expected failure itself.
      this.log.error("request failed", { err: error, method: req.method, url: req.url });
      this.count("internal");
      if (!res.headersSent) sendJson(res, 500, { error: "internal_error" });
      else res.destroy();
    });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse, started: bigint): Promise<void> {
    const method = req.method ?? "GET";
    const target = parseRequestTarget(req.url ?? "");
    if (!target) {
      this.finish(req, started, "bad_request", 400);
      sendJson(res, 400, { error: "bad_request", message: "the request target must be a valid /path" });
      return;
    }
    if (await this.builtIn(method, target.forwardPath, req, res)) {
      this.finish(
        req,
        started,
        target.forwardPath === this.relayOpen || target.forwardPath === this.relayTopUp ? "relay" : "admin",
        res.statusCode,
      );
      return;
    }

    if (isBlockPayment(req)) {
      await answerBlockPayment(this.streams, req, res);
      this.finish(req, started, res.statusCode === 200 ? "paid" : "refused", res.statusCode);
      return;
    }
    const route = this.resolve(method, target.matchPath, req);
    if (route === undefined) {
      if (this.unmatched === "reject") {
        this.finish(req, started, "no_route", 404);
        sendJson(res, 404, { error: "not_found", message: `no route for ${method} ${target.forwardPath}` });
        return;
      }
    }
    if (!route) {
      this.forward(req, res, target, undefined, started);
      return;
    }

    const header = req.headers[PAYMENT_SIGNATURE_HEADER];
    const paidRequest: PaidRequest = {
      method,
      pathAndQuery: target.forwardPath + target.query,
      url: this.resourceUrl(req, target),
      paymentHeader: Array.isArray(header) ? header[0] : header,
      price: route.price,
      pricing: route.pricing,
      ...(route.description ? { description: route.description } : {}),
    };
    // A retry is answered only for the request its receipt was signed for (the gate's
    // retriedReceipt), so a replayed voucher buys nothing else.
    let result = await this.options.gate.authorize(paidRequest, { early: this.earlyMethods.has(method) });
    // A metered stream starts with a fresh block; a resent one would pay for a second stream.
    if (result.ok && route.meter && result.retry) result = this.options.gate.refuse(paidRequest, "voucher_reused");
    if (!result.ok) {
      this.refused(req, res, started, result);
      return;
    }
    const paid = {
      request: paidRequest,
      payment: result,
      price: route.price,
      pricing: route.pricing,
      meter: route.meter,
    };
    this.forward(req, res, target, paid, started);
  }

  private refused(req: http.IncomingMessage, res: http.ServerResponse, started: bigint, refusal: Refusal): void {
    this.finish(req, started, "refused", refusal.status, () => ({ reason: refusal.reason }));
    res.setHeader("access-control-expose-headers", EXPOSE_HEADERS);
    res.setHeader("cache-control", "no-store");
    const method = req.method ?? "GET";
    if (
      this.page &&
      refusal.status === 402 &&
      wantsPaywallPage(method, req.headers.accept, req.headers[PAYMENT_SIGNATURE_HEADER] !== undefined)
    ) {
      const site = req.headers["sec-fetch-site"];
      const page = this.page.render(refusal.body, Array.isArray(site) ? site[0] : site);
      res.writeHead(402, { ...refusal.headers, ...page.headers, "content-length": Buffer.byteLength(page.html) });
      res.end(method === "HEAD" ? undefined : page.html);
      return;
    }
    sendJson(res, refusal.status, refusal.body, refusal.headers);
  }

  /**
   * Runs `next` once a paid request's voucher is durable (at once if it already is, or if the
   * request is free). If the store's write fails instead, `discard` drops whatever the upstream
   * sent and the client gets `store_unavailable`: nothing reaches it before its payment is
   * durable. If the client has left meanwhile, only `discard` runs.
   */
  private afterDurable(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    paid: PaidRoute | undefined,
    started: bigint,
    next: () => void,
    discard: () => void,
  ): void {
    const durable = paid?.payment.durable;
    if (paid === undefined || durable === undefined) {
      next();
      return;
    }
    void durable.then((stored) => {
      if (res.destroyed) discard();
      else if (stored) next();
      else {
        discard();
        this.refused(req, res, started, this.options.gate.refuse(paid.request, "store_unavailable"));
      }
    });
  }

  /** The route of a request: undefined if none, null if free. */
  private resolve(method: string, matchPath: string, req: http.IncomingMessage): ResolvedRoute | null | undefined {
    const route = this.matcher.match(method, matchPath);
    if (method === "HEAD") {
      // A HEAD runs the GET handler on most servers (Express among them): price it as the GET
      // unless a HEAD-specific route is dearer.
      return costlier(route, this.matcher.match("GET", matchPath));
    }
    if (method === "OPTIONS" && route === undefined && req.headers["access-control-request-method"]) {
      // A CORS preflight carries no payment and runs no handler; let the upstream answer it for
      // any path that has a route, or browsers could never reach a priced route.
      const wanted = String(req.headers["access-control-request-method"]).toUpperCase();
      if (this.matcher.match(wanted, matchPath) !== undefined) return null;
    }
    return route;
  }

  private resourceUrl(req: http.IncomingMessage, target: RequestTarget): string {
    const base = this.options.publicUrl ?? `http://${req.headers.host ?? "localhost"}`;
    return base + target.forwardPath + target.query;
  }

  /** Serves health, metrics and relay endpoints; true when it answered. */
  private async builtIn(
    method: string,
    path: string,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<boolean> {
    if (this.page?.serve(method, path, req, res)) return true;
    if (path === this.healthPath) {
      if (!allowMethods(method, ["GET", "HEAD"], res)) return true;
      let report: HealthReport;
      try {
        report = this.options.health ? this.options.health() : { ok: true };
      } catch (error) {
        report = { ok: false, error: String(error) };
      }
      const { ok, ...rest } = report;
      sendJson(res, ok ? 200 : 503, { status: ok ? "ok" : "degraded", ...rest }, { "cache-control": "no-store" });
      return true;
    }
    if (path === this.metricsPath) {
      if (!allowMethods(method, ["GET", "HEAD"], res)) return true;
      const { metrics } = this.options;
      const text = metrics ? await metrics.render() : "";
      res.writeHead(200, {
        "content-type": metrics?.contentType ?? "text/plain; version=0.0.4; charset=utf-8",
        "cache-control": "no-store",
      });
      res.end(method === "HEAD" ? undefined : text);
      return true;
    }
    if (this.options.relay && (path === this.relayOpen || path === this.relayTopUp)) {
      if (!allowMethods(method, ["POST"], res)) return true;
      await this.options.relay.handle(path === this.relayOpen ? "open" : "topup", req, res);
      return true;
    }
    return false;
  }

  /**
   * Streams the request to the upstream and the response back. A paid request's voucher is
   * verified here and durable, or (see {@link afterDurable}) being made durable: nothing goes back
   * to the client before it is. Once it is, whatever happens next, the charge stands (see
   * {@link upstreamFailed}).
   */
  private forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    target: RequestTarget,
    paid: PaidRoute | undefined,
    started: bigint,
  ): void {
    // The client left while its payment was being made durable: nobody to answer. A paid
    // request's charge stands; its receipt is in the store and a retry of the voucher is free.
    if (res.destroyed) return;
    const upstream = this.options.upstream;
    const headers = this.upstreamHeaders(req, paid);
    let upstreamReq: http.ClientRequest;
    try {
      upstreamReq = this.request({
        protocol: upstream.protocol,
        hostname: upstream.hostname.replace(/^\[|\]$/g, ""),
        port: upstream.port || undefined,
        method: req.method,
        path: this.upstreamBase + target.forwardPath + target.query,
        headers,
        agent: this.agent,
      });
    } catch (error) {
      // Only invalid header values throw synchronously (e.g. a method node refuses).
      const failed = () => this.upstreamFailed(req, res, paid, started, "bad_request", error);
      this.afterDurable(req, res, paid, started, failed, () => undefined);
      return;
    }
    upstreamReq.setTimeout(this.timeoutMs, () => upstreamReq.destroy(new UpstreamTimeoutError()));

    let responded = false;
    upstreamReq.on("response", (upstreamRes) => {
      responded = true;
      upstreamRes.on("error", () => res.destroy());
      upstreamRes.on("aborted", () => res.destroy());
      const send = () => {
        try {
          this.respond(req, res, upstreamRes, target, paid, started);
        } catch (error) {
          // A bug, not bad input; still answered rather than crashing the process.
          upstreamRes.resume();
          this.upstreamFailed(req, res, paid, started, "internal", error);
        }
      };
      this.afterDurable(req, res, paid, started, send, () => upstreamRes.resume());
    });
    upstreamReq.on("error", (error) => {
      if (responded) {
        res.destroy();
        return;
      }
      const kind = error instanceof UpstreamTimeoutError ? "timeout" : "unreachable";
      const failed = () => this.upstreamFailed(req, res, paid, started, kind, error);
      this.afterDurable(req, res, paid, started, failed, () => undefined);
    });
    // The client went away (or the response is done): stop the upstream work too.
    res.on("close", () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.on("error", () => upstreamReq.destroy());
    req.pipe(upstreamReq);
  }

  /** Streams the upstream's response back, settling the charge and adding PAYMENT-RESPONSE. */
  private respond(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    upstreamRes: http.IncomingMessage,
    target: RequestTarget,
    paid: PaidRoute | undefined,
    started: bigint,
  ): void {
    const status = upstreamRes.statusCode ?? 502;
    const out = responseHeaders(upstreamRes);
    if (paid?.meter && status < 300 && this.respondMetered(req, res, upstreamRes, paid, paid.meter, out, started))
      return;
    // A metered route's upstream did not stream (an error, a redirect): no unit was served.
    if (paid?.meter && status >= 300 && !paid.payment.retry) paid.payment.charge(0n);
    if (paid) {
      if (paid.pricing === "upto" && !paid.payment.retry) {
        const reported = upstreamRes.headers[CHARGE_HEADER];
        const charge = parseChargeHeader(reported, paid.price);
        if (charge !== undefined) paid.payment.charge(charge);
        else if (reported !== undefined) {
          // The full price stands: it is what the payer agreed to, and the only safe reading of
          // a report the upstream got wrong.
          this.log.warn("invalid x-paychan-charge from upstream; charging the full price", {
            value: reported,
            max: paid.price,
            path: target.forwardPath,
          });
        }
      }
      out[PAYMENT_RESPONSE_HEADER] = paid.payment.responseHeader();
      out["access-control-expose-headers"] = EXPOSE_HEADERS;
      // A shared cache must never answer the next (unpaid) request with this paid response.
      out["cache-control"] = "private, no-store";
    }
    if (this.draining) out.connection = "close";
    try {
      res.writeHead(status, upstreamRes.statusMessage, out);
    } catch (error) {
      // An upstream header node will not re-emit (invalid characters): answer 502 instead.
      upstreamRes.resume();
      this.upstreamFailed(req, res, paid, started, "bad_response", error);
      return;
    }
    this.finish(req, started, paid ? (paid.payment.retry ? "retry" : "paid") : "free", status, () =>
      paid ? { charge: paid.payment.response().amount } : {},
    );
    upstreamRes.pipe(res);
  }

  /**
   * Streams a metered route's answer through a {@link BodyMeter}: an event stream with in-band
   * voucher requests and receipt, any other body chunked with the receipt in a trailer. False
   * when the payment cannot pay by use (an `exact` transfer): the response then goes out as an
   * "upto" one charged the full block.
   */
  private respondMetered(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    upstreamRes: http.IncomingMessage,
    paid: PaidRoute,
    meter: ResolvedMeter,
    out: http.OutgoingHttpHeaders,
    started: bigint,
  ): boolean {
    const sse = isEventStream(upstreamRes.headers["content-type"]);
    if (this.draining) out.connection = "close";
    const body = BodyMeter.open(
      res,
      this.streams,
      { ...paid, meter },
      sse ? "sse" : "chunked",
      upstreamRes.statusCode,
      out,
    );
    if (!body) return false;
    this.finish(req, started, "paid", upstreamRes.statusCode ?? 200, () => ({ stream: body.stream.id }));
    void meterUpstream(upstreamRes, body, meter.unit, this.log);
    return true;
  }

  /**
   * Answers 502 when the upstream cannot be reached or fails before its response headers.
   *
   * The charge of a paid request stands, as for any request the proxy accepted: the voucher is
   * durable and its receipt goes out in PAYMENT-RESPONSE so the client's running total stays in
   * step with ours. The remedy is the gate's idempotent retry: sending the SAME voucher again
   * within the retry window is answered (and forwarded again) without a second charge.
   */
  private upstreamFailed(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    paid: PaidRoute | undefined,
    started: bigint,
    kind: string,
    error: unknown,
  ): void {
    this.options.metrics?.upstreamErrors.inc({ kind });
    this.log.warn("upstream request failed", { kind, err: error, method: req.method, path: req.url });
    this.finish(req, started, "upstream_error", 502);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    if (paid) {
      headers[PAYMENT_RESPONSE_HEADER] = paid.payment.responseHeader();
      headers["access-control-expose-headers"] = EXPOSE_HEADERS;
    }
    // The request body may be half read: the connection cannot carry another request.
    if (!req.complete) headers.connection = "close";
    sendJson(res, 502, { error: kind === "timeout" ? "upstream_timeout" : "bad_gateway" }, headers);
  }

  private upstreamHeaders(req: http.IncomingMessage, paid: PaidRoute | undefined): http.OutgoingHttpHeaders {
    const out: http.OutgoingHttpHeaders = {};
    const dropped = connectionTokens(req.headers.connection);
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name) || dropped.has(name)) continue;
      // x-paychan-* is ours to set: a client must not be able to claim it paid. The voucher
      // itself is not the upstream's business (it gets the payer and channel below instead).
      if (name.startsWith("x-paychan-") || name === PAYMENT_SIGNATURE_HEADER) continue;
      // The body is streamed through as it arrives; the proxy has already answered any 100-continue.
      if (name === "expect") continue;
      out[name] = value;
    }
    out.host = this.options.upstream.host;
    const remote = req.socket.remoteAddress;
    if (remote) {
      const prior = req.headers["x-forwarded-for"];
      out["x-forwarded-for"] = prior ? `${Array.isArray(prior) ? prior.join(", ") : prior}, ${remote}` : remote;
    }
    if (!req.headers["x-forwarded-host"] && req.headers.host) out["x-forwarded-host"] = req.headers.host;
    if (!req.headers["x-forwarded-proto"]) out["x-forwarded-proto"] = "http";
    if (paid) {
      const payment = paid.payment;
      // From the payment's fields: building its whole PAYMENT-RESPONSE here would cost a paid
      // request an object and its strings.
      out[PAYER_HEADER] = payment.payer;
      if (payment.scheme === SCHEME) out[CHANNEL_HEADER] = channelIdHex(payment.channelId);
      out[PRICE_HEADER] = paid.price.toString();
      out[PRICING_HEADER] = paid.pricing;
    }
    return out;
  }

  private finish(
    req: http.IncomingMessage,
    started: bigint,
    outcome: RequestOutcome,
    status: number,
    fields?: () => Record<string, unknown>,
  ): void {
    this.count(outcome);
    // Per-request lines at debug only, and their fields are built only when they will be written.
    if (this.log.enabled("debug")) {
      this.log.debug("request", {
        method: req.method,
        path: req.url,
        status,
        outcome,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        ...fields?.(),
      });
    }
  }

  private count(outcome: RequestOutcome): void {
    this.options.metrics?.requests.inc({ outcome });
  }

  private clientError(error: NodeJS.ErrnoException, socket: Socket): void {
    if (error.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, text, code] =
      error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "headers_too_large"]
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "request_timeout"]
          : [400, "Bad Request", "bad_request"];
    this.count("bad_request");
    if (this.log.enabled("debug")) this.log.debug("client error", { code: error.code, status });
    const body = JSON.stringify({ error: code });
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
}

/** Creates the proxy (not yet listening). */
export function createProxy(options: ProxyOptions): PaymentProxy {
  return new PaymentProxy(options);
}

function costlier(
  a: ResolvedRoute | null | undefined,
  b: ResolvedRoute | null | undefined,
): ResolvedRoute | null | undefined {
  if (a && b) return b.price > a.price ? b : a;
  if (a || b) return a || b;
  return a === null || b === null ? null : undefined;
}

function connectionTokens(value: string | undefined): Set<string> {
  const out = new Set<string>();
  if (value) for (const token of value.split(",")) out.add(token.trim().toLowerCase());
  return out;
}

function responseHeaders(upstreamRes: http.IncomingMessage): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const dropped = connectionTokens(upstreamRes.headers.connection);
  for (const [name, value] of Object.entries(upstreamRes.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || dropped.has(name) || name === CHARGE_HEADER) continue;
    out[name] = value;
  }
  return out;
}

function allowMethods(method: string, allowed: readonly string[], res: http.ServerResponse): boolean {
  if (allowed.includes(method)) return true;
  sendJson(res, 405, { error: "method_not_allowed" }, { allow: allowed.join(", ") });
  return false;
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(res.req?.method === "HEAD" ? undefined : text);
}
