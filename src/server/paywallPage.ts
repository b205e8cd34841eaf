import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type http from "node:http";
import path from "node:path";
import { findNetwork } from "../chain/networks";
import type { ExactOffer } from "../protocol/exact";
import { encodeHeader, SCHEME, type PaymentRequired } from "../protocol/headers";
import { formatDollars } from "../protocol/price";
import { silentLogger, type Logger } from "../shared/log";

/**
 * The browser paywall: a person opening a priced URL gets an HTML page (still status 402, still
 * with PAYMENT-REQUIRED) showing what is bought and its price, and a pay button driven by
 * paychan's own script (src/browser/, bundled into dist/browser/paywall.js by `npm run build`).
 *
 * The page runs under a strict Content-Security-Policy, allowing exactly what the wallet flow needs:
 * - `script-src 'nonce-…'`: only the `<script>` this response names, served by paychan itself
 *   (same origin, no CDN) and pinned by its SRI hash; no inline script, no eval;
 * - `style-src 'nonce-…'`: only the page's own `<style>` block;
 * - `img-src data:`: EIP-6963 wallet icons, which the standard requires to be data: URIs;
 * - `connect-src 'self'`: the paid request and the gasless relay, both on this origin. Wallets
 *   reach their own nodes from the extension, never from the page;
 * - everything else `'none'` (frames, forms, base URI, framing by other sites);
 * - violations are reported to {@link CSP_REPORT_PATH} with `report-uri`, which every browser
 *   sends at once. Not `report-to`: where both are given Chromium uses only `report-to`, whose
 *   Reporting API queues reports for later (none had arrived 30 s after a violation in headless
 *   Chromium), and Firefox and Safari send only `report-uri`. The endpoint also reads the
 *   Reporting API's format, for a deployment that adds `report-to` itself.
 */

/** Where paychan serves the page's script. */
export const PAYWALL_SCRIPT_PATH = "/.paychan/paywall.js";
/** Where browsers report Content-Security-Policy violations of the page. */
export const CSP_REPORT_PATH = "/.paychan/csp-report";
/** The `<meta>` carrying the base64 PAYMENT-REQUIRED body to the script (no inline script needed). */
export const PAYMENT_REQUIRED_META = "x402-payment-required";

const MAX_REPORT_BYTES = 16 * 1024;

/** Whether to answer a refused request with the HTML page: a GET or HEAD without a payment from a client that asks for HTML. */
export function wantsPaywallPage(method: string, accept: string | undefined, paid: boolean): boolean {
  if (paid || (method !== "GET" && method !== "HEAD") || !accept) return false;
  // Browsers navigating send "text/html,...;q=0.9,*/*;q=0.8"; fetch() and agents send */* or JSON.
  return accept.split(",").some((part) => {
    const [type, ...params] = part.trim().toLowerCase().split(";");
    if (type.trim() !== "text/html") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** One rendered page: its HTML and the headers that go with it. */
export interface PaywallResponse {
  readonly html: string;
  readonly headers: Record<string, string>;
}

/** The paywall page's script (read once) and the page built around it. */
export class PaywallPage {
  private script: { readonly body: Buffer; readonly integrity: string; readonly etag: string } | null | undefined;
  private reports = 0;
  private readonly log: Logger;
  private readonly scriptFile: string | undefined;
  private readonly onReport: (() => void) | undefined;

  /**
   * @param scriptFile the bundled script; default: dist/browser/paywall.js of this package. Without
   *   it the page is still served (terms and price) with a note that paying needs the built script.
   */
  constructor(
    options: { readonly scriptFile?: string; readonly logger?: Logger; readonly onReport?: () => void } = {},
  ) {
    this.scriptFile = options.scriptFile ?? defaultScriptFile();
    this.log = options.logger ?? silentLogger;
    this.onReport = options.onReport;
  }

  /** CSP violation reports received so far. */
  get cspReports(): number {
    return this.reports;
  }

  /**
   * The page for a refusal's PAYMENT-REQUIRED body. `fetchSite` is the request's Sec-Fetch-Site:
   * a page another site navigated to does not pay from a stored channel on its own, it asks
   * for a click first, so no other site can spend the buyer's limit by sending them to priced URLs.
   */
  render(
    required: Omit<PaymentRequired, "accepts"> & {
      readonly accepts: readonly (PaymentRequired["accepts"][number] | ExactOffer)[];
    },
    fetchSite?: string,
  ): PaywallResponse {
    // Absent in browsers too old to send it: nothing to tell, as before the header existed.
    const autoPay = fetchSite === undefined || fetchSite === "same-origin" || fetchSite === "none";
    const nonce = randomBytes(16).toString("base64");
    const script = this.loadScript();
    const offer = required.accepts.find((o) => o.scheme === SCHEME);
    const decimals = offer?.extra.decimals ?? 6;
    const price = offer ? formatDollars(BigInt(offer.amount), decimals) : "";
    const network = offer ? (findNetwork(offer.network)?.name ?? offer.network) : "";
    const what = required.resource.description ?? required.resource.url;
    const upto = offer?.extra.pricing === "upto" ? "up to " : "";
    const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="${PAYMENT_REQUIRED_META}" content="${encodeHeader(required)}">
<title>Payment required: ${escapeHtml(what)}</title>
<style nonce="${nonce}">${STYLE}</style>
${script ? `<script nonce="${nonce}" src="${PAYWALL_SCRIPT_PATH}" integrity="${script.integrity}" defer></script>` : ""}
</head>
<body data-autopay="${autoPay}">
<main>
<h1>Payment required</h1>
<p class="what" id="what">${escapeHtml(what)}</p>
<p class="price"><strong id="price">${upto}${escapeHtml(price)}</strong> per request${
      offer ? `, in ${escapeHtml(offer.extra.name)} on ${escapeHtml(network)}` : ""
    }</p>
<section id="pay"${script ? "" : " hidden"}>
<div id="wallets"></div>
<label id="limit-row" hidden>Spending limit (US$) <input id="limit" type="number" inputmode="decimal" min="0" step="any"></label>
<button id="approve" type="button" hidden>Approve and pay</button>
<p id="status" role="status">${script ? "Looking for a wallet…" : ""}</p>
</section>
${script ? "" : `<p>Paying from this page needs paychan's built script (npm run build).</p>`}
<noscript><p>Paying from this page needs JavaScript. Programs can pay with the PAYMENT-REQUIRED header.</p></noscript>
<pre id="content" hidden></pre>
</main>
</body>
</html>
`;
    const csp = [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "img-src data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
      `report-uri ${CSP_REPORT_PATH}`,
    ].join("; ");
    return {
      html,
      headers: {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
      },
    };
  }

  /** Serves the script and the CSP report endpoint; true when `path` was one of them. */
  serve(method: string, pathname: string, req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (pathname === PAYWALL_SCRIPT_PATH) {
      this.serveScript(method, req, res);
      return true;
    }
    if (pathname === CSP_REPORT_PATH) {
      this.receiveReport(method, req, res);
      return true;
    }
    return false;
  }

  private serveScript(method: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    const script = method === "GET" || method === "HEAD" ? this.loadScript() : undefined;
    if (!script) {
      res.writeHead(method === "GET" || method === "HEAD" ? 404 : 405, { "content-length": 0 });
      res.end();
      return;
    }
    const headers = {
      "content-type": "text/javascript; charset=utf-8",
      // Revalidated each time: a page pins the script by its hash, so a stale copy would be refused.
      "cache-control": "no-cache",
      etag: script.etag,
      "x-content-type-options": "nosniff",
      "cross-origin-resource-policy": "same-origin",
    };
    if (req.headers["if-none-match"] === script.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, "content-length": script.body.length });
    res.end(method === "HEAD" ? undefined : script.body);
  }

  /** Counts and logs a violation report (`application/csp-report` or the Reporting API's array). */
  private receiveReport(method: string, req: http.IncomingMessage, res: http.ServerResponse): void {
    if (method !== "POST") {
      res.writeHead(405, { allow: "POST", "content-length": 0 });
      res.end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REPORT_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      for (const report of parseReports(Buffer.concat(chunks).toString("utf8"))) {
        this.reports++;
        this.onReport?.();
        this.log.warn("paywall page CSP violation", report);
      }
      res.writeHead(204);
      res.end();
    });
    req.on("error", () => res.destroy());
  }

  private loadScript() {
    if (this.script === undefined) {
      if (!this.scriptFile || !existsSync(this.scriptFile)) this.script = null;
      else {
        const body = readFileSync(this.scriptFile);
        const digest = createHash("sha384").update(body).digest("base64");
        this.script = { body, integrity: `sha384-${digest}`, etag: `"${digest.slice(0, 27)}"` };
      }
    }
    return this.script;
  }
}

/** The built script: next to this file in the package (dist/browser), or under dist/ from the sources. */
function defaultScriptFile(): string | undefined {
  return [
    path.join(__dirname, "..", "browser", "paywall.js"),
    path.join(__dirname, "..", "..", "dist", "browser", "paywall.js"),
  ].find((file) => existsSync(file));
}

/** The violations in a report body, reduced to what says what was blocked. */
function parseReports(text: string): Record<string, unknown>[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return [{ malformed: text.slice(0, 200) }];
  }
  const items = Array.isArray(body) ? body : [body];
  return items.map((item) => {
    const report = (item as Record<string, unknown>)?.["csp-report"] ?? (item as Record<string, unknown>)?.body ?? item;
    const r = (report ?? {}) as Record<string, unknown>;
    return {
      directive: r["effective-directive"] ?? r.effectiveDirective ?? r["violated-directive"],
      blocked: r["blocked-uri"] ?? r.blockedURL,
      document: r["document-uri"] ?? r.documentURL,
    };
  });
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );
}

const STYLE = `
:root{color-scheme:light dark;font-family:system-ui,sans-serif}
[hidden]{display:none!important}
main{max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
h1{font-size:1.4rem;margin:0 0 .5rem}
.what{font-size:1.1rem;word-break:break-all}
.price strong{font-size:1.6rem}
#wallets button,#approve{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem;border-radius:.5rem;border:1px solid #888;cursor:pointer}
#wallets img{width:1.4rem;height:1.4rem;vertical-align:middle;margin-right:.5rem}
#approve{background:#1652f0;color:#fff;border-color:#1652f0}
label{display:block;margin:.5rem 0}
input{width:8rem;font-size:1rem;padding:.3rem}
#status{min-height:1.5rem;color:#666}
pre{white-space:pre-wrap;word-break:break-word;background:#8882;padding:1rem;border-radius:.5rem}
`;
