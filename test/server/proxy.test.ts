import { expect } from "chai";
import http from "node:http";
import net from "node:net";
import { performance } from "node:perf_hooks";
import {
  decodeHeader,
  type PaymentRequired,
  type SettleResponse,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
} from "../../src/protocol/headers";
import { requestHash, verifyReceipt } from "../../src/protocol/receipt";
import { createLogger } from "../../src/shared/log";
import { PaymentMetrics } from "../../src/server/metrics";
import {
  CHARGE_HEADER,
  normalizeRouteTable,
  parseChargeHeader,
  parseRequestTarget,
  PaymentProxy,
  type ProxyOptions,
} from "../../src/server/proxy";
import type { RouteTable } from "../../src/shared/config";
import { CHAIN_ID, CONTRACT, harness, payerChannel, PAYER, type Harness } from "../helpers/memoryStore";
import { validPaymentRequired, validSettleResponse } from "../helpers/x402Wire";

const PRICE = 1_000n;
const UPTO = 5_000n;
const ROUTES: RouteTable = {
  "GET /paid": "1000",
  "POST /paid": "1000",
  "POST /usage": { price: "5000", pricing: "upto" },
  "GET /slow": "1000",
  "GET /free": null,
  "/free/*": null,
};

interface Seen {
  /** performance.now() when the request's body had arrived. */
  at: number;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A tiny upstream API recording what reaches it. */
class Upstream {
  readonly seen: Seen[] = [];
  server: http.Server;
  /** Behaviour per path, e.g. to report a charge or answer 500. */
  handlers = new Map<string, (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void>();

  constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        const at = performance.now();
        this.seen.push({ at, method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
        const path = (req.url ?? "").split("?")[0];
        const handler = this.handlers.get(path);
        if (handler) return handler(req, res, body);
        res.writeHead(200, {
          "content-type": "application/json",
          "keep-alive": "timeout=99",
          "x-upstream": "yes",
          [CHARGE_HEADER]: "1",
        });
        res.end(JSON.stringify({ path: req.url, body }));
      });
    });
  }

  async listen(port = 0): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    return (this.server.address() as net.AddressInfo).port;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Sends a request with an exact request target (fetch would normalize the path). */
function send(
  port: number,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        method: options.method ?? "GET",
        path: options.path,
        headers: options.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Writes raw bytes and returns the raw answer (for request targets node's client refuses to send). */
function sendRaw(port: number, raw: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.end(raw));
    let out = "";
    socket.on("data", (c: Buffer) => (out += c.toString()));
    socket.on("close", () => resolve(out));
    socket.on("error", reject);
  });
}

function paymentResponse(reply: Reply): SettleResponse {
  const header = reply.headers[PAYMENT_RESPONSE_HEADER];
  expect(header, "PAYMENT-RESPONSE header").to.be.a("string");
  return decodeHeader<SettleResponse>(header as string);
}

describe("paying reverse proxy", () => {
  let upstream: Upstream;
  let upstreamPort: number;
  let h: Harness;
  let metrics: PaymentMetrics;
  let proxy: PaymentProxy;
  let port: number;
  let amount: bigint;
  const logLines: string[] = [];

  async function startProxy(overrides: Partial<ProxyOptions> = {}): Promise<void> {
    metrics = new PaymentMetrics({ ledgers: () => h.engine.ledgers(), watcherLagBlocks: () => 2 });
    proxy = new PaymentProxy({
      gate: h.gate,
      routes: ROUTES,
      decimals: 6,
      upstream: new URL(`http://127.0.0.1:${upstreamPort}`),
      upstreamTimeoutMs: 1_000,
      metrics,
      health: () => ({ ok: true, chain: { lagBlocks: 2 } }),
      logger: createLogger({ level: "debug", sink: { write: (line) => logLines.push(line) } }),
      ...overrides,
    });
    port = (await proxy.listen(0, "127.0.0.1")).port;
  }

  /** A PAYMENT-SIGNATURE paying `price` on top of everything paid so far. */
  function pay(price = PRICE): string {
    amount += price;
    return h.header(amount, price);
  }

  beforeEach(async () => {
    upstream = new Upstream();
    upstreamPort = await upstream.listen();
    // The gate is built before the metrics of each proxy; forward its observations to them.
    h = harness({
      gate: {
        observer: {
          accepted: (ticket, seconds) => metrics.observer.accepted?.(ticket, seconds),
          rejected: (reason) => metrics.observer.rejected?.(reason),
          retried: (channelId, amount) => metrics.observer.retried?.(channelId, amount),
        },
      },
    });
    amount = 0n;
    logLines.length = 0;
    await startProxy();
  });

  afterEach(async () => {
    await proxy.close(100);
    await upstream.close();
  });

  describe("routing", () => {
    it("passes free routes through, dropping hop-by-hop headers and x-paychan-* from either side", async () => {
      const reply = await send(port, {
        path: "/free?x=1",
        headers: {
          connection: "keep-alive, x-drop-me",
          "x-drop-me": "1",
          "x-paychan-payer": "0xforged",
          "x-keep": "k",
        },
      });
      expect(reply.status).to.equal(200);
      expect(reply.headers["x-upstream"]).to.equal("yes");
      expect(reply.headers[CHARGE_HEADER]).to.equal(undefined);
      // Node adds its own keep-alive header for the client connection; the upstream's must not leak.
      expect(reply.headers["keep-alive"]).not.to.equal("timeout=99");
      expect(reply.headers[PAYMENT_RESPONSE_HEADER]).to.equal(undefined);
      const seen = upstream.seen[0];
      expect(seen.url).to.equal("/free?x=1");
      expect(seen.headers["x-keep"]).to.equal("k");
      expect(seen.headers["x-drop-me"]).to.equal(undefined);
      expect(seen.headers["x-paychan-payer"]).to.equal(undefined);
      expect(seen.headers.host).to.equal(`127.0.0.1:${upstreamPort}`);
      expect(seen.headers["x-forwarded-for"]).to.equal("127.0.0.1");
      expect(seen.headers["x-forwarded-host"]).to.equal(`127.0.0.1:${port}`);
    });

    it("answers 404 for unmatched paths by default, and forwards them with unmatchedRoutes: free", async () => {
      const reply = await send(port, { path: "/nowhere" });
      expect(reply.status).to.equal(404);
      expect(JSON.parse(reply.body)).to.deep.include({ error: "not_found" });
      expect(upstream.seen).to.have.length(0);

      await proxy.close(100);
      await startProxy({ unmatchedRoutes: "free" });
      expect((await send(port, { path: "/nowhere" })).status).to.equal(200);
      expect(upstream.seen).to.have.length(1);
    });

    it("prices every spelling of a priced path the upstream could route to it", async () => {
      for (const path of ["/free/../paid", "/PAID", "/paid/", "//paid", "/%70aid", "/free/..%2fpaid", "/./paid"]) {
        const reply = await send(port, { path });
        expect(reply.status, path).to.equal(402);
      }
      const head = await send(port, { method: "HEAD", path: "/paid" });
      expect(head.status).to.equal(402);
      expect(upstream.seen).to.have.length(0);
    });

    it("forwards the dot-resolved path, prefixed with the upstream's base path", async () => {
      await proxy.close(100);
      await startProxy({ upstream: new URL(`http://127.0.0.1:${upstreamPort}/api/`) });
      await send(port, { path: "/free/a/../b//c?q=%2F" });
      expect(upstream.seen[0].url).to.equal("/api/free/b/c?q=%2F");
    });

    it("answers 400 to request targets that are not an origin-form path", async () => {
      const absolute = await sendRaw(
        port,
        "GET http://evil.example/paid HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
      );
      expect(absolute).to.match(/^HTTP\/1\.1 400 /);
      const badEscape = await send(port, { path: "/paid%zz" });
      expect(badEscape.status).to.equal(400);
      const nul = await send(port, { path: "/paid%00" });
      expect(nul.status).to.equal(400);
      expect(upstream.seen).to.have.length(0);
    });

    it("lets CORS preflights of routed paths reach the upstream unpaid", async () => {
      const reply = await send(port, {
        method: "OPTIONS",
        path: "/paid",
        headers: { origin: "https://app.example", "access-control-request-method": "GET" },
      });
      expect(reply.status).to.equal(200);
      expect(upstream.seen[0].method).to.equal("OPTIONS");
    });
  });

  describe("payments", () => {
    it("answers an unpaid priced request with 402, PAYMENT-REQUIRED and the same terms as JSON", async () => {
      const reply = await send(port, { path: "/paid?city=Lisbon", headers: { host: "api.example" } });
      expect(reply.status).to.equal(402);
      const terms = decodeHeader<PaymentRequired>(reply.headers[PAYMENT_REQUIRED_HEADER] as string);
      expect(JSON.parse(reply.body)).to.deep.equal(terms);
      expect(terms.accepts[0].amount).to.equal("1000");
      expect(terms.resource.url).to.equal("http://api.example/paid?city=Lisbon");
      expect(reply.headers["access-control-expose-headers"]).to.include("payment-required");
      expect(upstream.seen).to.have.length(0);
    });

    it("serves a paid request with PAYMENT-RESPONSE and a receipt bound to the request", async () => {
      const reply = await send(port, { path: "/paid?city=Lisbon", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(200);
      const response = paymentResponse(reply);
      expect(response.amount).to.equal("1000");
      expect(response.extra.chargedTotal).to.equal("1000");
      expect(response.payer).to.equal(PAYER);
      expect(await validSettleResponse(reply.headers["payment-response"] as string)).to.deep.equal(response);
      expect(response.extra.receipt.request).to.equal(requestHash("GET", "/paid?city=Lisbon"));
      expect(await verifyReceipt(response.extra.receipt, h.receipts.address, CHAIN_ID, CONTRACT)).to.equal(true);
      expect(reply.headers["cache-control"]).to.equal("private, no-store");

      const seen = upstream.seen[0].headers;
      expect(seen[PAYMENT_SIGNATURE_HEADER]).to.equal(undefined);
      expect(seen["x-paychan-payer"]).to.equal(PAYER);
      expect(seen["x-paychan-channel"]).to.equal(`0x${payerChannel().toString(16)}`);
      expect(seen["x-paychan-price"]).to.equal("1000");
      expect(seen["x-paychan-pricing"]).to.equal("fixed");
      expect(h.store.getLedger(payerChannel())?.chargedTotal).to.equal(1_000n);
    });

    it("streams a paid request body to the upstream", async () => {
      const body = "x".repeat(200_000);
      const reply = await send(port, {
        method: "POST",
        path: "/paid",
        headers: { [PAYMENT_SIGNATURE_HEADER]: pay(), "content-type": "text/plain" },
        body,
      });
      expect(reply.status).to.equal(200);
      expect(upstream.seen[0].body).to.equal(body);
    });

    it("refuses a replayed voucher after the retry window and does not reach the upstream", async () => {
      const header = pay();
      expect((await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: header } })).status).to.equal(
        200,
      );
      // Another amount signed with the same (channel, amount) is a reuse; a fresh amount below the
      // charged total is insufficient.
      const low = h.header(500n, PRICE);
      const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: low } });
      expect(reply.status).to.equal(402);
      expect(JSON.parse(reply.body).error).to.equal("insufficient_amount");
      expect(upstream.seen).to.have.length(1);
    });

    it("honours a retry of a voucher only for the request it paid for", async () => {
      const header = pay();
      const first = await send(port, { path: "/paid?city=Lisbon", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(first.status).to.equal(200);
      const other = await send(port, { path: "/paid?city=Porto", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(other.status).to.equal(402);
      expect(JSON.parse(other.body).error).to.equal("voucher_reused");
      const post = await send(port, {
        method: "POST",
        path: "/paid?city=Lisbon",
        headers: { [PAYMENT_SIGNATURE_HEADER]: header },
      });
      expect(post.status).to.equal(402);
      expect(upstream.seen).to.have.length(1);

      const again = await send(port, { path: "/paid?city=Lisbon", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(again.status).to.equal(200);
      expect(paymentResponse(again)).to.deep.equal(paymentResponse(first));
      expect(upstream.seen).to.have.length(2);
      expect(h.engine.channelView(payerChannel())?.chargedTotal).to.equal("1000");
    });

    it("charges what an upto route reports in x-paychan-charge and strips the header", async () => {
      upstream.handlers.set("/usage", (_req, res) => {
        res.writeHead(200, { [CHARGE_HEADER]: "1234" });
        res.end("done");
      });
      const reply = await send(port, {
        method: "POST",
        path: "/usage",
        headers: { [PAYMENT_SIGNATURE_HEADER]: pay(UPTO) },
      });
      expect(reply.status).to.equal(200);
      expect(reply.headers[CHARGE_HEADER]).to.equal(undefined);
      const response = paymentResponse(reply);
      expect(response.amount).to.equal("1234");
      expect(response.extra.receipt.charge).to.equal("1234");
      expect(await verifyReceipt(response.extra.receipt, h.receipts.address, CHAIN_ID, CONTRACT)).to.equal(true);
      expect(upstream.seen[0].headers["x-paychan-price"]).to.equal("5000");
      expect(upstream.seen[0].headers["x-paychan-pricing"]).to.equal("upto");
      expect(h.engine.channelView(payerChannel())?.chargedTotal).to.equal("1234");
    });

    it("charges the full price when an upto route reports nothing, garbage or too much", async () => {
      for (const reported of [undefined, "12.5", "-1", "5001", "0x10"]) {
        upstream.handlers.set("/usage", (_req, res) => {
          res.writeHead(200, reported === undefined ? {} : { [CHARGE_HEADER]: reported });
          res.end();
        });
        const reply = await send(port, {
          method: "POST",
          path: "/usage",
          headers: { [PAYMENT_SIGNATURE_HEADER]: pay(UPTO) },
        });
        expect(paymentResponse(reply).amount, String(reported)).to.equal("5000");
      }
      expect(logLines.some((l) => l.includes("invalid x-paychan-charge"))).to.equal(true);
    });

    it("ignores x-paychan-charge on fixed-price routes", async () => {
      const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(paymentResponse(reply).amount).to.equal("1000");
      expect(reply.headers[CHARGE_HEADER]).to.equal(undefined);
    });
  });

  describe("durability", () => {
    /** Makes every store write take `delayMs`, and returns when each one became durable. */
    function slowStore(delayMs: number): number[] {
      const durableAt: number[] = [];
      const store = h.store;
      const record = store.recordVoucher.bind(store);
      store.delayMs = delayMs;
      store.recordVoucher = async (voucher) => {
        await record(voucher);
        durableAt.push(performance.now());
      };
      return durableAt;
    }

    async function timedSend(options: Parameters<typeof send>[1]): Promise<Reply & { at: number }> {
      const reply = await send(port, options);
      return { ...reply, at: performance.now() };
    }

    it("forwards a paid GET while its voucher is made durable, and answers only once it is", async () => {
      const durableAt = slowStore(300);
      const reply = await timedSend({ path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(200);
      expect(paymentResponse(reply).extra.chargedTotal).to.equal("1000");
      expect(durableAt).to.have.length(1);
      expect(upstream.seen).to.have.length(1);
      expect(upstream.seen[0].at, "upstream reached before the write was durable").to.be.below(durableAt[0]);
      expect(reply.at, "answered after the write was durable").to.be.at.least(durableAt[0]);
    });

    it("forwards a paid POST only once its voucher is durable", async () => {
      const durableAt = slowStore(100);
      const reply = await timedSend({
        method: "POST",
        path: "/paid",
        headers: { [PAYMENT_SIGNATURE_HEADER]: pay() },
        body: "order",
      });
      expect(reply.status).to.equal(200);
      expect(upstream.seen[0].at).to.be.at.least(durableAt[0]);
    });

    it('forwards nothing before its voucher is durable with forwardBeforeDurable: "never"', async () => {
      await proxy.close(100);
      await startProxy({ forwardBeforeDurable: "never" });
      const durableAt = slowStore(100);
      const reply = await timedSend({ path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(200);
      expect(upstream.seen[0].at).to.be.at.least(durableAt[0]);
    });

    it("answers 503 store_unavailable, not the upstream's response, when the write fails after forwarding", async () => {
      slowStore(100);
      h.store.failRecordVoucher = true;
      const header = pay();
      const failed = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(upstream.seen).to.have.length(1);
      expect(failed.status).to.equal(503);
      expect(JSON.parse(failed.body).error).to.equal("store_unavailable");
      expect(failed.headers[PAYMENT_RESPONSE_HEADER]).to.equal(undefined);
      expect(failed.headers["x-upstream"]).to.equal(undefined);
      expect(h.store.getLedger(payerChannel())?.chargedTotal ?? 0n).to.equal(0n);
      expect(await metrics.render()).to.include('paychan_vouchers_rejected_total{reason="store_unavailable"} 1');

      // Nothing was charged: the same voucher, sent again, is accepted once.
      h.store.failRecordVoucher = false;
      const again = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(again.status).to.equal(200);
      expect(paymentResponse(again).extra.chargedTotal).to.equal("1000");
      expect(h.store.getLedger(payerChannel())?.chargedTotal).to.equal(1_000n);
    });

    it("answers 503 store_unavailable, not 502, when the upstream is down and the write fails", async () => {
      await upstream.close();
      slowStore(50);
      h.store.failRecordVoucher = true;
      const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(503);
      expect(JSON.parse(reply.body).error).to.equal("store_unavailable");
      expect(reply.headers[PAYMENT_RESPONSE_HEADER]).to.equal(undefined);
      upstream = new Upstream();
      await upstream.listen(upstreamPort);
    });
  });

  describe("failures", () => {
    it("answers 502 with PAYMENT-RESPONSE when the upstream is down; the charge stands and a retry is free", async () => {
      await upstream.close();
      const header = pay();
      const down = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(down.status).to.equal(502);
      expect(JSON.parse(down.body)).to.deep.equal({ error: "bad_gateway" });
      expect(paymentResponse(down).extra.chargedTotal).to.equal("1000");
      expect(h.store.getLedger(payerChannel())?.chargedTotal).to.equal(1_000n);

      upstream = new Upstream();
      await upstream.listen(upstreamPort);
      const again = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
      expect(again.status).to.equal(200);
      expect(paymentResponse(again).extra.chargedTotal).to.equal("1000");
      expect(h.engine.channelView(payerChannel())?.chargedTotal).to.equal("1000");
      expect(await metrics.render()).to.include('paychan_upstream_errors_total{kind="unreachable"} 1');
    });

    it("answers 502 upstream_timeout when the upstream stalls", async () => {
      upstream.handlers.set("/slow", () => undefined); // never answers
      const reply = await send(port, { path: "/slow", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(502);
      expect(JSON.parse(reply.body)).to.deep.equal({ error: "upstream_timeout" });
      expect(reply.headers[PAYMENT_RESPONSE_HEADER]).to.be.a("string");
    });

    it("passes upstream errors through with the receipt (the request was served)", async () => {
      upstream.handlers.set("/paid", (_req, res) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end("oops");
      });
      const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      expect(reply.status).to.equal(500);
      expect(reply.body).to.equal("oops");
      expect(paymentResponse(reply).amount).to.equal("1000");
    });

    it("rejects an oversized PAYMENT-SIGNATURE with 402 header_too_large", async () => {
      const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: "A".repeat(9_000) } });
      expect(reply.status).to.equal(402);
      expect(JSON.parse(reply.body).error).to.equal("header_too_large");
      expect(reply.headers[PAYMENT_REQUIRED_HEADER]).to.be.a("string");
    });

    it("answers 431 when the header section exceeds maxHeaderBytes", async () => {
      await proxy.close(100);
      await startProxy({ maxHeaderBytes: 8_192 });
      const raw = await sendRaw(port, `GET /paid HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(10_000)}\r\n\r\n`);
      expect(raw).to.match(/^HTTP\/1\.1 431 /);
      expect(raw).to.include('{"error":"headers_too_large"}');
    });

    it("maps malformed payment headers to 402 with a reason, never 500", async () => {
      for (const [value, reason] of [
        ["!!!!", "malformed_header"],
        [Buffer.from("[1,2]").toString("base64"), "malformed_header"],
        [Buffer.from('{"x402Version":1}').toString("base64"), "unsupported_version"],
        [Buffer.from('{"x402Version":2,"accepted":{},"payload":{}}').toString("base64"), "invalid_payload"],
      ]) {
        const reply = await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: value } });
        expect(reply.status, value).to.equal(402);
        expect(JSON.parse(reply.body).error, value).to.equal(reason);
        validPaymentRequired(reply.headers[PAYMENT_REQUIRED_HEADER] as string);
      }
    });
  });

  describe("built-in endpoints", () => {
    it("serves /healthz as JSON, 503 when degraded", async () => {
      const ok = await send(port, { path: "/healthz" });
      expect(ok.status).to.equal(200);
      expect(JSON.parse(ok.body)).to.deep.equal({ status: "ok", chain: { lagBlocks: 2 } });

      await proxy.close(100);
      await startProxy({ health: () => ({ ok: false, store: { ok: false } }) });
      const bad = await send(port, { path: "/healthz" });
      expect(bad.status).to.equal(503);
      expect(JSON.parse(bad.body)).to.deep.equal({ status: "degraded", store: { ok: false } });
    });

    it("serves /metrics in the Prometheus text format and counts outcomes", async () => {
      await send(port, { path: "/paid" });
      await send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      await send(port, { path: "/free" });
      const reply = await send(port, { path: "/metrics" });
      expect(reply.status).to.equal(200);
      expect(reply.headers["content-type"]).to.equal("text/plain; version=0.0.4; charset=utf-8");
      expect(reply.body).to.include("paychan_vouchers_accepted_total 1");
      expect(reply.body).to.include('paychan_vouchers_rejected_total{reason="payment_required"} 1');
      expect(reply.body).to.include('paychan_requests_total{outcome="paid"} 1');
      expect(reply.body).to.include('paychan_requests_total{outcome="refused"} 1');
      expect(reply.body).to.include('paychan_requests_total{outcome="free"} 1');
      expect(reply.body).to.include("paychan_voucher_verification_seconds_count 1");
      expect(reply.body).to.include("paychan_unclaimed_atomic");
      expect(reply.body).to.include("paychan_watcher_lag_blocks 2");
      expect((await send(port, { method: "POST", path: "/metrics" })).status).to.equal(405);
    });

    it("logs one debug line per request", async () => {
      await send(port, { path: "/free" });
      const line = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "request");
      expect(line).to.deep.include({ level: "debug", method: "GET", path: "/free", status: 200, outcome: "free" });
    });
  });

  describe("shutdown", () => {
    it("lets an in-flight request finish before closing", async () => {
      let release: () => void = () => undefined;
      upstream.handlers.set("/paid", (_req, res) => {
        release = () => res.end("late");
      });
      const pending = send(port, { path: "/paid", headers: { [PAYMENT_SIGNATURE_HEADER]: pay() } });
      while (upstream.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
      const closing = proxy.close(5_000);
      setTimeout(() => release(), 50);
      const reply = await pending;
      await closing;
      expect(reply.status).to.equal(200);
      expect(reply.body).to.equal("late");
      await startProxy(); // afterEach closes it again
    });
  });

  describe("helpers", () => {
    it("parseRequestTarget resolves dots, collapses slashes and lowercases only the match form", () => {
      expect(parseRequestTarget("/A/./b/../C//d/?Q=1#frag")).to.deep.equal({
        forwardPath: "/A/C/d/",
        query: "?Q=1",
        matchPath: "/a/c/d",
      });
      expect(parseRequestTarget("/../../x")).to.deep.equal({ forwardPath: "/x", query: "", matchPath: "/x" });
      expect(parseRequestTarget("/a%5c..%5cb")?.matchPath).to.equal("/b");
      expect(parseRequestTarget("*")).to.equal(undefined);
      expect(parseRequestTarget("http://x/y")).to.equal(undefined);
    });

    it("normalizeRouteTable lowercases paths and drops trailing slashes, keeping wildcards", () => {
      expect(normalizeRouteTable({ "GET /Weather/": "1", "/Docs/*": null, "GET /": "2" })).to.deep.equal({
        "GET /weather": "1",
        "/docs/*": null,
        "GET /": "2",
      });
    });

    it("parseChargeHeader accepts decimal atomic units up to the price", () => {
      expect(parseChargeHeader("0", 5n)).to.equal(0n);
      expect(parseChargeHeader(" 5 ", 5n)).to.equal(5n);
      for (const bad of [undefined, "6", "01", "1e3", "", ["1"]]) {
        expect(parseChargeHeader(bad as string | undefined, 5n), String(bad)).to.equal(undefined);
      }
    });
  });
});
