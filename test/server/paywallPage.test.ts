import { expect } from "chai";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import express from "express";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, type PaymentRequired } from "../../src/protocol/headers";
import { paywall } from "../../src/server/paywall";
import {
  CSP_REPORT_PATH,
  PAYMENT_REQUIRED_META,
  PAYWALL_SCRIPT_PATH,
  PaywallPage,
  wantsPaywallPage,
} from "../../src/server/paywallPage";
import { PaymentProxy } from "../../src/server/proxy";
import { harness } from "../helpers/memoryStore";

/**
 * The HTML paywall as the proxy and the Express middleware serve it: who gets it, what it says,
 * the policy it runs under, its script and its CSP report endpoint. The page's behaviour in a
 * browser is test/browser/paywall.test.ts.
 */

const BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
const SCRIPT = "document.body.dataset.paychan = 'test';\n";

describe("paywall page", () => {
  let dir: string;
  let scriptFile: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-page-"));
    scriptFile = path.join(dir, "paywall.js");
    writeFileSync(scriptFile, SCRIPT);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("goes to unpaid GET and HEAD requests of clients that ask for HTML, never to programs or payments", () => {
    expect(wantsPaywallPage("GET", BROWSER_ACCEPT, false)).to.equal(true);
    expect(wantsPaywallPage("HEAD", "text/html", false)).to.equal(true);
    expect(wantsPaywallPage("GET", "application/json, TEXT/HTML; q=0.5", false)).to.equal(true);
    expect(wantsPaywallPage("GET", "*/*", false)).to.equal(false);
    expect(wantsPaywallPage("GET", "application/json", false)).to.equal(false);
    expect(wantsPaywallPage("GET", "text/html;q=0", false)).to.equal(false);
    expect(wantsPaywallPage("GET", undefined, false)).to.equal(false);
    expect(wantsPaywallPage("POST", BROWSER_ACCEPT, false)).to.equal(false);
    expect(wantsPaywallPage("GET", BROWSER_ACCEPT, true)).to.equal(false);
  });

  for (const server of ["proxy", "middleware"] as const) {
    describe(`served by the ${server}`, () => {
      let base: string;
      let page: PaywallPage;
      let close: () => Promise<void>;
      beforeEach(async () => {
        page = new PaywallPage({ scriptFile });
        const routes = { "GET /article": { price: "$0.0015", description: 'News <b>"today"</b> & more' } };
        const h = harness();
        if (server === "proxy") {
          const proxy = new PaymentProxy({
            gate: h.gate,
            routes,
            decimals: 6,
            upstream: new URL("http://127.0.0.1:9"),
            paywallPage: page,
          });
          base = `http://127.0.0.1:${(await proxy.listen(0, "127.0.0.1")).port}`;
          close = () => proxy.close(100);
        } else {
          const app = express();
          app.use(paywall({ gate: h.gate, decimals: 6, routes, page }));
          const listening: Server = app.listen(0, "127.0.0.1");
          await new Promise((resolve) => listening.once("listening", resolve));
          base = `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
          close = () => new Promise((resolve) => listening.close(() => resolve()));
        }
      });
      afterEach(() => close());

      it("answers a browser with the 402 page: price, what is bought, the terms, a nonce policy, no inline script", async () => {
        const response = await fetch(`${base}/article?id=7`, { headers: { accept: BROWSER_ACCEPT } });
        expect(response.status).to.equal(402);
        expect(response.headers.get("content-type")).to.equal("text/html; charset=utf-8");
        const required = decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER)!);
        const html = await response.text();
        const csp = response.headers.get("content-security-policy")!;
        const nonce = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp)?.[1];
        expect(nonce).to.be.a("string");
        expect(csp).to.equal(
          `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; img-src data:; ` +
            `connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; report-uri ${CSP_REPORT_PATH}`,
        );
        const integrity = `sha384-${createHash("sha384").update(SCRIPT).digest("base64")}`;
        expect(html).to.include(
          `<script nonce="${nonce}" src="${PAYWALL_SCRIPT_PATH}" integrity="${integrity}" defer></script>`,
        );
        expect(html.match(/<script/g)).to.have.length(1);
        expect(html).to.include(`<style nonce="${nonce}">`);
        expect(html).to.include('<strong id="price">$0.0015</strong> per request, in USDC on base-sepolia');
        expect(html).to.include('<p class="what" id="what">News &lt;b&gt;&quot;today&quot;&lt;/b&gt; &amp; more</p>');
        const meta = new RegExp(`<meta name="${PAYMENT_REQUIRED_META}" content="([^"]+)">`).exec(html)?.[1];
        expect(decodeHeader<PaymentRequired>(meta!)).to.deep.equal(required);
        expect(required.accepts[0].amount).to.equal("1500");

        expect(html).to.include('<body data-autopay="true">');
        const sent = await fetch(`${base}/article`, {
          headers: { accept: BROWSER_ACCEPT, "sec-fetch-site": "cross-site" },
        });
        expect(await sent.text()).to.include('<body data-autopay="false">');

        // A second page gets another nonce.
        const again = await fetch(`${base}/article`, { headers: { accept: BROWSER_ACCEPT } });
        expect(again.headers.get("content-security-policy")).not.to.include(nonce);
      });

      it("answers programs (and any request carrying a payment) with the JSON terms as before", async () => {
        const plain = await fetch(`${base}/article`);
        expect(plain.status).to.equal(402);
        expect(plain.headers.get("content-type")).to.match(/^application\/json/);
        expect(((await plain.json()) as PaymentRequired).accepts[0].amount).to.equal("1500");
        const paying = await fetch(`${base}/article`, {
          headers: { accept: BROWSER_ACCEPT, "payment-signature": "bm90IGEgdm91Y2hlcg==" },
        });
        // Refused with 402 too, but a program sent it: JSON with the reason, not the page.
        expect(paying.status).to.equal(402);
        expect(paying.headers.get("content-type")).to.match(/^application\/json/);
        expect(((await paying.json()) as PaymentRequired).error).to.equal("malformed_header");
      });

      it("serves its script with the hash the page pins, revalidated by ETag", async () => {
        const script = await fetch(`${base}${PAYWALL_SCRIPT_PATH}`);
        expect(script.status).to.equal(200);
        expect(script.headers.get("content-type")).to.equal("text/javascript; charset=utf-8");
        expect(script.headers.get("cache-control")).to.equal("no-cache");
        expect(await script.text()).to.equal(SCRIPT);
        const cached = await fetch(`${base}${PAYWALL_SCRIPT_PATH}`, {
          headers: { "if-none-match": script.headers.get("etag")! },
        });
        expect(cached.status).to.equal(304);
        expect((await fetch(`${base}${PAYWALL_SCRIPT_PATH}`, { method: "POST" })).status).to.equal(405);
      });

      it("counts CSP violation reports in both formats browsers send", async () => {
        const post = (type: string, body: unknown) =>
          fetch(`${base}${CSP_REPORT_PATH}`, {
            method: "POST",
            headers: { "content-type": type },
            body: JSON.stringify(body),
          });
        const legacy = await post("application/csp-report", {
          "csp-report": { "effective-directive": "connect-src", "blocked-uri": "https://evil.example" },
        });
        expect(legacy.status).to.equal(204);
        const reporting = await post("application/reports+json", [
          { type: "csp-violation", body: { effectiveDirective: "script-src-elem", blockedURL: "inline" } },
          { type: "csp-violation", body: { effectiveDirective: "img-src", blockedURL: "https://x.example/a.png" } },
        ]);
        expect(reporting.status).to.equal(204);
        expect(page.cspReports).to.equal(3);
        expect((await fetch(`${base}${CSP_REPORT_PATH}`)).status).to.equal(405);
      });
    });
  }

  it("pays on its own only where the buyer navigated themselves (Sec-Fetch-Site same-origin or none)", () => {
    const page = new PaywallPage({ scriptFile });
    const required: PaymentRequired = { x402Version: 2, resource: { url: "http://x.test/a" }, accepts: [] };
    const autopay = (site?: string) => /<body data-autopay="(true|false)">/.exec(page.render(required, site).html)?.[1];
    expect([undefined, "none", "same-origin", "same-site", "cross-site"].map(autopay)).to.deep.equal([
      "true",
      "true",
      "true",
      "false",
      "false",
    ]);
  });

  it("still shows the terms when the script was not built, saying how to build it", () => {
    const rendered = new PaywallPage({ scriptFile: path.join(dir, "missing.js") }).render({
      x402Version: 2,
      resource: { url: "http://x.test/a" },
      accepts: [harness().offer(1_000n)],
    });
    expect(rendered.html).not.to.include("<script");
    expect(rendered.html).to.include("Paying from this page needs paychan's built script (npm run build).");
    expect(rendered.html).to.include('<strong id="price">$0.001</strong>');
  });
});
