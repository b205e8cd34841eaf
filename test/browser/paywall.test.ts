import { expect } from "chai";
import { existsSync, mkdirSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { createPublicClient, createWalletClient, http as httpTransport, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { buildPaywallScript } from "../../scripts/build-paywall";
import { usdcAbi } from "../../src/chain/abi";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, type PaymentRequired } from "../../src/protocol/headers";
import { CSP_REPORT_PATH, PAYWALL_SCRIPT_PATH } from "../../src/server/paywallPage";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { injectWallet, type InjectedWallet } from "../helpers/injectedWallet";
import { startLocalServer, type LocalServer } from "../helpers/localServer";

/**
 * The browser paywall end to end, in headless Chromium (Debian's, driven by playwright-core)
 * against a `hardhat node` and the real server: a person with a wallet (an injected EIP-1193
 * provider announced through EIP-6963, backed by a Hardhat account holding mock USDC and no need
 * for ETH) opens a priced URL, connects, approves a spending limit, and gets the content; then 10
 * more priced pages are paid without a click or a wallet prompt, a reload reuses the channel, and
 * the page's Content-Security-Policy reported no violation (while it does block, and report, what
 * the flow does not need).
 *
 * Prints the clicks and the seconds from the first load to the content. PAYCHAN_SCREENSHOTS=<dir>
 * saves the page before and after paying there (`npm run screenshots` writes docs/images/).
 */

const CHROMIUM = process.env.PAYCHAN_CHROMIUM ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
/** The buyer: a Hardhat account the node holds unlocked, so the injected wallet can sign with it. */
const BUYER: Address = privateKeyToAccount(HARDHAT_KEYS[5]).address;
const PRICE = 1_000n; // $0.001
const DOLLAR = 1_000_000n;

describe("browser paywall (headless Chromium)", function () {
  this.timeout(240_000);
  let node: HardhatNode;
  let local: LocalServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let wallet: InjectedWallet;
  /** CSP violations the page's own `securitypolicyviolation` events and console saw. */
  const consoleViolations: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`      skipped: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set PAYCHAN_CHROMIUM)`);
      this.skip();
    }
    // The page is served with the bundle `npm run build` ships: build it from these sources.
    const bytes = await buildPaywallScript();
    console.log(`      paywall script bundled: ${bytes} bytes`);
    node = await startHardhatNode({ deploy: true });
    const usdc = node.deployments!.MockUSDC;
    const publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) });
    const minter = createWalletClient({
      account: privateKeyToAccount(MINTER_KEY),
      chain: hardhat,
      transport: httpTransport(node.url),
    });
    const hash = await minter.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [BUYER, 5n * DOLLAR],
    });
    await publicClient.waitForTransactionReceipt({ hash });
    local = await startLocalServer(
      { rpcUrl: node.url, contract: node.deployments!.PaymentChannels, token: usdc },
      { payee: PAYEE_KEY, relayer: RELAYER_KEY },
      {
        routes: {
          "GET /article/*": { price: "$0.001", description: "One article of the Daily Ledger" },
          "GET /archive/*": { price: "$0.99", description: "The whole archive" },
        },
      },
      "/article/1",
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 720, height: 640 } });
    wallet = await injectWallet(context, node.url, BUYER);
    await context.addInitScript(() =>
      document.addEventListener("securitypolicyviolation", (event) =>
        console.error(`CSP violation: ${event.effectiveDirective} ${event.blockedURI}`),
      ),
    );
    page = await context.newPage();
    page.on("console", (message) => {
      if (/Content.Security.Policy|CSP violation/i.test(message.text())) consoleViolations.push(message.text());
    });
  });

  after(async () => {
    await browser?.close();
    await local?.stop();
    await node?.stop();
  });

  const cspReports = async (): Promise<number> => (await local.server.metrics.cspReports.get()).values[0]?.value ?? 0;
  const paid = (p: Page) => p.waitForSelector('body[data-paychan="paid"]', { timeout: 60_000 });
  const shots = process.env.PAYCHAN_SCREENSHOTS;
  const screenshot = async (name: string) => {
    if (!shots) return;
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, name), fullPage: true });
  };

  it("shows the paywall, pays in two clicks without ETH, pays 10 more pages and a reload without prompts, under a CSP that reports nothing", async () => {
    let clicks = 0;
    const click = async (selector: string) => {
      clicks++;
      await page.click(selector);
    };
    const started = Date.now();
    const first = await page.goto(`${local.baseUrl}/article/1`);

    // The page: 402 with the terms in PAYMENT-REQUIRED too, served under the strict policy.
    expect(first?.status()).to.equal(402);
    const headers = first!.headers();
    const required = decodeHeader<PaymentRequired>(headers[PAYMENT_REQUIRED_HEADER]);
    expect(required.accepts[0].amount).to.equal(PRICE.toString());
    const csp = headers["content-security-policy"];
    expect(csp).to.match(/^default-src 'none'; script-src 'nonce-[A-Za-z0-9+/=]{24}'; style-src 'nonce-/);
    expect(csp).to.include(
      "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    expect(csp).to.include(`report-uri ${CSP_REPORT_PATH}`);
    expect(await page.textContent("h1")).to.equal("Payment required");
    expect(await page.textContent("#what")).to.equal("One article of the Daily Ledger");
    expect(await page.textContent("#price")).to.equal("$0.001");
    const script = await page.$eval("script", (s) => ({ src: s.getAttribute("src"), integrity: s.integrity }));
    expect(script.src).to.equal(PAYWALL_SCRIPT_PATH);
    expect(script.integrity).to.match(/^sha384-/);
    expect(await page.$$eval("script:not([src])", (inline) => inline.length)).to.equal(0);

    // Click 1: connect the wallet it found through EIP-6963.
    await page.waitForSelector("#wallets button", { timeout: 10_000 });
    expect(await page.textContent("#wallets button")).to.equal("Connect Hardhat Test Wallet");
    await screenshot("paywall-before.png");
    await click("#wallets button");
    // Click 2: approve the proposed spending limit (the minimum deposit, $1) and pay.
    await page.waitForSelector("#approve:not([hidden])");
    expect(await page.inputValue("#limit")).to.equal("1");
    expect(await page.textContent("#approve")).to.equal("Approve $1 limit and pay $0.001");
    await click("#approve");
    await paid(page);
    const seconds = (Date.now() - started) / 1000;
    expect(JSON.parse((await page.textContent("#content")) ?? "")).to.deep.equal({ ok: true, path: "/article/1" });
    expect(await page.textContent("#status")).to.equal("Paid $0.001; $0.999 left of your $1 limit.");
    expect(await page.textContent("h1")).to.equal("Paid");
    expect(await page.isVisible("#approve")).to.equal(false);
    await screenshot("paywall-after.png");
    const channelId = BigInt((await page.getAttribute("body", "data-channel"))!);
    expect(clicks).to.equal(2);
    // What the wallet asked the person: connect, then one signature (the EIP-3009 deposit).
    expect(Object.fromEntries(wallet.prompts)).to.deep.equal({ eth_requestAccounts: 1, eth_signTypedData_v4: 1 });
    const record = local.server.engine.record(channelId);
    expect(record?.payer).to.equal(BUYER);
    expect(record?.deposit).to.equal(DOLLAR);

    // 10 more priced pages: each paid by the session key at once, no click, no wallet prompt.
    const more = Date.now();
    for (let i = 2; i <= 11; i++) {
      const answer = await page.goto(`${local.baseUrl}/article/${i}`);
      expect(answer?.status()).to.equal(402);
      await paid(page);
      expect(JSON.parse((await page.textContent("#content")) ?? "")).to.deep.equal({ ok: true, path: `/article/${i}` });
    }
    const perPage = (Date.now() - more) / 10 / 1000;

    // Returning: a reload pays from the same channel, still without a prompt.
    await page.reload();
    await paid(page);
    expect(BigInt((await page.getAttribute("body", "data-channel"))!)).to.equal(channelId);
    expect(await page.textContent("#status")).to.equal("Paid $0.001; $0.988 left of your $1 limit.");
    expect(Object.fromEntries(wallet.prompts)).to.deep.equal({ eth_requestAccounts: 1, eth_signTypedData_v4: 1 });
    expect(local.server.engine.channelView(channelId)?.chargedTotal).to.equal((12n * PRICE).toString());
    const relayed = (await local.server.metrics.relay.get()).values.filter((v) => v.labels.operation === "open");
    expect(relayed.map((v) => [v.labels.result, v.value])).to.deep.equal([["ok", 1]]);

    // Nothing the flow did was blocked: no report reached the endpoint, none showed in the page.
    expect(consoleViolations).to.deep.equal([]);
    expect(await cspReports()).to.equal(0);

    console.log(
      `      clicks from first load to content: ${clicks}; wallet prompts: 2 (connect, one signature); ` +
        `seconds from first load to content: ${seconds.toFixed(2)}; each further page paid in ${perPage.toFixed(2)} s`,
    );
  });

  it("resynchronizes from the server's channel view when the browser's stored amounts are stale: one voucher refused, then paid", async () => {
    const channelId = BigInt((await page.getAttribute("body", "data-channel"))!);
    const charged = BigInt(local.server.engine.channelView(channelId)!.chargedTotal);
    // As if the site's storage were restored from an older copy: the next amount would be one already used.
    await page.evaluate(
      () =>
        new Promise<void>((resolve, reject) => {
          const open = indexedDB.open("paychan");
          open.onsuccess = () => {
            const store = open.result.transaction("channels", "readwrite").objectStore("channels");
            const all = store.getAll();
            all.onsuccess = () => {
              for (const channel of all.result as { signedMax: string; chargedKnown: string }[]) {
                store.put({ ...channel, signedMax: "0", chargedKnown: "0" });
              }
              store.transaction.oncomplete = () => resolve();
            };
          };
          open.onerror = () => reject(open.error);
        }),
    );
    // Vouchers refused (the page's own unpaid load counts as payment_required, not here).
    const rejected = async () =>
      (await local.server.metrics.rejected.get()).values
        .filter((v) => v.labels.reason !== "payment_required")
        .reduce((sum, v) => sum + v.value, 0);
    const refusedBefore = await rejected();
    await page.goto(`${local.baseUrl}/article/12`);
    await paid(page);
    expect(JSON.parse((await page.textContent("#content")) ?? "")).to.deep.equal({ ok: true, path: "/article/12" });
    expect(await rejected()).to.equal(refusedBefore + 1);
    expect(BigInt(local.server.engine.channelView(channelId)!.chargedTotal)).to.equal(charged + PRICE);
    expect(Object.fromEntries(wallet.prompts)).to.deep.equal({ eth_requestAccounts: 1, eth_signTypedData_v4: 1 });
  });

  it("asks to add to the limit when it does not cover a page, and tops the same channel up gaslessly (two clicks)", async () => {
    const channelId = BigInt((await page.getAttribute("body", "data-channel"))!);
    const charged = BigInt(local.server.engine.channelView(channelId)!.chargedTotal);
    expect(DOLLAR - charged).to.be.lessThan(990_000n);
    await page.goto(`${local.baseUrl}/archive/all`);
    await page.waitForSelector('body[data-paychan="connect"] #wallets button');
    expect(await page.textContent("#status")).to.equal(
      "What is left of your spending limit does not cover this page: add to it to go on.",
    );
    await page.click("#wallets button");
    await page.waitForSelector("#approve:not([hidden])");
    expect(await page.textContent("#approve")).to.equal("Add $1 to your limit and pay $0.99");
    await page.click("#approve");
    await paid(page);
    expect(BigInt((await page.getAttribute("body", "data-channel"))!)).to.equal(channelId);
    expect(local.server.engine.record(channelId)?.deposit).to.equal(2n * DOLLAR);
    expect(BigInt(local.server.engine.channelView(channelId)!.chargedTotal)).to.equal(charged + 990_000n);
    const topUps = (await local.server.metrics.relay.get()).values.filter((v) => v.labels.operation === "topup");
    expect(topUps.map((v) => [v.labels.result, v.value])).to.deep.equal([["ok", 1]]);
    expect(Object.fromEntries(wallet.prompts)).to.deep.equal({ eth_requestAccounts: 2, eth_signTypedData_v4: 2 });
    expect(await cspReports()).to.equal(0);
  });

  it("asks for one click, not the wallet, before paying a page another site sent the buyer to", async () => {
    const elsewhere = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(`<a id="go" href="${local.baseUrl}/article/20">read this</a>`);
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, "127.0.0.1", resolve));
    try {
      // localhost and 127.0.0.1 are different sites to the browser.
      await page.goto(`http://localhost:${(elsewhere.address() as AddressInfo).port}/`);
      const accepted = async () => (await local.server.metrics.accepted.get()).values[0].value;
      const before = await accepted();
      await Promise.all([page.waitForURL(`${local.baseUrl}/article/20`), page.click("#go")]);
      await page.waitForSelector('body[data-paychan="confirm"] #approve:not([hidden])');
      expect(await page.textContent("#approve")).to.equal("Pay $0.001 from your limit");
      expect(await accepted()).to.equal(before); // nothing paid before the click
      await page.click("#approve");
      await paid(page);
      expect(JSON.parse((await page.textContent("#content")) ?? "")).to.deep.equal({ ok: true, path: "/article/20" });
      expect(await accepted()).to.equal(before + 1);
      expect(Object.fromEntries(wallet.prompts)).to.deep.equal({ eth_requestAccounts: 2, eth_signTypedData_v4: 2 });
    } finally {
      elsewhere.closeAllConnections();
      await new Promise((resolve) => elsewhere.close(resolve));
    }
  });

  it("blocks and reports what the wallet flow does not need (another origin, inline script)", async () => {
    await page.goto(`${local.baseUrl}/article/1`);
    await paid(page);
    const before = await cspReports();
    const outcome = await page.evaluate(async (rpc) => {
      const fetched = await fetch(rpc, { method: "POST", body: "{}" }).then(
        () => "fetched",
        () => "blocked",
      );
      const inline = document.createElement("script");
      inline.textContent = "document.body.dataset.inline = 'ran'";
      document.body.append(inline);
      return { fetched, inline: document.body.dataset.inline ?? "blocked" };
    }, node.url);
    expect(outcome).to.deep.equal({ fetched: "blocked", inline: "blocked" });
    const events = () => consoleViolations.filter((v) => v.startsWith("CSP violation"));
    for (let waited = 0; ((await cspReports()) < before + 2 || events().length < 2) && waited < 30_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await cspReports()).to.equal(before + 2);
    expect(events()).to.deep.equal([
      `CSP violation: connect-src ${node.url}/`,
      "CSP violation: script-src-elem inline",
    ]);
  });
});
