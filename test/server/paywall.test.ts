import { expect } from "chai";
import express, { type Express } from "express";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { privateKeyToAccount } from "viem/accounts";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { REASONS } from "../../src/protocol/reasons";
import { parseReceipt, requestHash, verifyReceipt } from "../../src/protocol/receipt";
import { paymentOf, paywall, type PaywallOptions } from "../../src/server/paywall";
import {
  CHAIN_ID,
  CONTRACT,
  PAYER,
  RECEIPT_KEY,
  harness,
  payerChannel,
  signVoucher,
  type Harness,
} from "../helpers/memoryStore";
import { validSettleResponse } from "../helpers/x402Wire";

const RECEIPT_SIGNER = privateKeyToAccount(RECEIPT_KEY).address;
const CH = payerChannel();
const WEATHER = 1_000n; // "$0.001"
const LLM = 10_000n; // "$0.01", upto

interface Running {
  base: string;
  h: Harness;
  server: Server;
  /** Handler invocations by path. */
  served: Map<string, number>;
}

function buildApp(h: Harness, routes?: PaywallOptions["routes"]): { app: Express; served: Map<string, number> } {
  const served = new Map<string, number>();
  const count = (path: string) => served.set(path, (served.get(path) ?? 0) + 1);
  const app = express();
  app.set("env", "test"); // keep Express's error handler from logging the deliberate 500
  app.use(
    paywall({
      gate: h.gate,
      decimals: 6,
      routes: routes ?? {
        "GET /weather": "$0.001",
        "/free": null,
        "POST /llm": { price: "$0.01", pricing: "upto", description: "Completion, billed by tokens" },
        "/api/*": "$0.002",
      },
    }),
  );
  app.get("/weather", (req, res) => {
    count("/weather");
    res.json({ city: req.query.city ?? "?", temperature: 21 });
  });
  app.get("/free", (_req, res) => {
    count("/free");
    res.json({ free: true });
  });
  app.post("/llm", (req, res) => {
    count("/llm");
    const tokens = BigInt(String(req.query.tokens ?? "0"));
    paymentOf(res)!.charge(tokens * 10n);
    res.json({ tokens: tokens.toString() });
  });
  app.get("/api/:name", (req, res) => {
    count("/api");
    res.json({ name: req.params.name, paid: paymentOf(res)?.amount.toString() });
  });
  app.get("/unpriced", (_req, res) => {
    count("/unpriced");
    res.send("ok");
  });
  return { app, served };
}

async function start(h = harness(), routes?: PaywallOptions["routes"]): Promise<Running> {
  const { app, served } = buildApp(h, routes);
  const server = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, h, server, served };
}

async function stop(running: Running): Promise<void> {
  running.server.closeAllConnections();
  await new Promise<void>((resolve) => running.server.close(() => resolve()));
}

function paymentHeader(offer: ChannelOffer, amount: bigint, channelId = CH): string {
  return encodePaymentSignature(offer, {
    channelId: channelIdHex(channelId),
    amount: amount.toString(),
    signature: signVoucher(channelId, amount),
  });
}

async function required(response: Response): Promise<PaymentRequired> {
  const header = response.headers.get("payment-required");
  expect(header, "PAYMENT-REQUIRED header").to.be.a("string");
  const body = (await response.json()) as PaymentRequired;
  expect(decodeHeader<PaymentRequired>(header!)).to.deep.equal(body);
  return body;
}

function paymentResponse(response: Response): SettleResponse {
  const header = response.headers.get("payment-response");
  expect(header, "PAYMENT-RESPONSE header").to.be.a("string");
  return decodeHeader<SettleResponse>(header!);
}

describe("paywall (Express, over HTTP)", () => {
  let running: Running;
  beforeEach(async () => {
    running = await start();
  });
  afterEach(async () => {
    await stop(running);
  });

  it("answers an unpaid request with 402, a decodable PAYMENT-REQUIRED header equal to the body", async () => {
    const response = await fetch(`${running.base}/weather?city=Lisbon`);
    expect(response.status).to.equal(402);
    expect(response.headers.get("access-control-expose-headers")).to.equal("payment-required, payment-response");
    const body = await required(response);
    expect(body.x402Version).to.equal(2);
    expect(body).not.to.have.property("error");
    expect(body.resource).to.deep.equal({ url: `${running.base}/weather?city=Lisbon` });
    expect(body.accepts).to.have.length(1);
    expect(body.accepts[0]).to.deep.include({ scheme: "channel", amount: WEATHER.toString() });
    expect(body.accepts[0].extra.receiptSigner).to.equal(RECEIPT_SIGNER);
    expect(running.served.get("/weather")).to.equal(undefined);
  });

  it("lets a paid request through with a PAYMENT-RESPONSE whose receipt verifies offline", async () => {
    const offer = (await required(await fetch(`${running.base}/weather?city=Lisbon`))).accepts[0];
    const response = await fetch(`${running.base}/weather?city=Lisbon`, {
      headers: { "PAYMENT-SIGNATURE": paymentHeader(offer, WEATHER) },
    });
    expect(response.status).to.equal(200);
    expect(await response.json()).to.deep.equal({ city: "Lisbon", temperature: 21 });
    const paid = paymentResponse(response);
    expect(paid).to.deep.include({ success: true, transaction: "", payer: PAYER, amount: "1000" });
    expect(paid.extra).to.deep.include({ channelId: channelIdHex(CH), voucherAmount: "1000", chargedTotal: "1000" });
    expect(await validSettleResponse(response.headers.get("payment-response")!)).to.deep.equal(paid);
    expect(await verifyReceipt(paid.extra.receipt, offer.extra.receiptSigner, CHAIN_ID, offer.extra.contract)).to.equal(
      true,
    );
    expect(parseReceipt(paid.extra.receipt).request).to.equal(requestHash("GET", "/weather?city=Lisbon"));
    expect(running.served.get("/weather")).to.equal(1);

    // The same header again is an idempotent retry: same receipt, no new charge.
    const again = await fetch(`${running.base}/weather?city=Lisbon`, {
      headers: { "PAYMENT-SIGNATURE": paymentHeader(offer, WEATHER) },
    });
    expect(again.status).to.equal(200);
    expect(paymentResponse(again).extra.receipt).to.deep.equal(paid.extra.receipt);
    expect(running.h.engine.channelView(CH)?.chargedTotal).to.equal("1000");
  });

  it("lets free and unpriced routes through without payment or PAYMENT-RESPONSE", async () => {
    const free = await fetch(`${running.base}/free`);
    expect(free.status).to.equal(200);
    expect(await free.json()).to.deep.equal({ free: true });
    expect(free.headers.get("payment-response")).to.equal(null);
    const unpriced = await fetch(`${running.base}/unpriced`);
    expect(unpriced.status).to.equal(200);
    expect(await fetch(`${running.base}/nothing-here`).then((r) => r.status)).to.equal(404);
    expect(running.h.store.recordCalls).to.equal(0);
  });

  it("prices prefix routes and exposes the payment to the handler", async () => {
    const offer = (await required(await fetch(`${running.base}/api/alpha`))).accepts[0];
    expect(offer.amount).to.equal("2000");
    const response = await fetch(`${running.base}/api/alpha`, {
      headers: { "payment-signature": paymentHeader(offer, 2_000n) },
    });
    expect(response.status).to.equal(200);
    expect(await response.json()).to.deep.equal({ name: "alpha", paid: "2000" });
  });

  it('charges an "upto" route what the handler reports, with a receipt for the final charge', async () => {
    const body = await required(await fetch(`${running.base}/llm?tokens=42`, { method: "POST" }));
    const offer = body.accepts[0];
    expect(offer.extra.pricing).to.equal("upto");
    expect(offer.amount).to.equal(LLM.toString());
    expect(body.resource.description).to.equal("Completion, billed by tokens");
    const response = await fetch(`${running.base}/llm?tokens=42`, {
      method: "POST",
      headers: { "payment-signature": paymentHeader(offer, LLM) },
    });
    expect(response.status).to.equal(200);
    const paid = paymentResponse(response);
    expect(paid.amount).to.equal("420");
    expect(paid.extra.chargedTotal).to.equal("420");
    expect(paid.extra.remaining).to.equal((10_000_000n - 420n).toString());
    const receipt = parseReceipt(paid.extra.receipt);
    expect(receipt.charge).to.equal(420n);
    expect(receipt.voucherAmount).to.equal(LLM);
    expect(receipt.request).to.equal(requestHash("POST", "/llm?tokens=42"));
    expect(await verifyReceipt(paid.extra.receipt, RECEIPT_SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
    expect(running.h.engine.channelView(CH)?.chargedTotal).to.equal("420");
  });

  it("answers malformed payments with 402 and the reason, never reaching the handler", async () => {
    const response = await fetch(`${running.base}/weather`, { headers: { "payment-signature": "not base64!" } });
    expect(response.status).to.equal(402);
    expect((await required(response)).error).to.equal("malformed_header");
    expect(running.served.get("/weather")).to.equal(undefined);
  });

  it("answers 402 with the channel view when the voucher is too low, and the client resynchronizes", async () => {
    const offer = (await required(await fetch(`${running.base}/weather`))).accepts[0];
    expect(
      (await fetch(`${running.base}/weather`, { headers: { "payment-signature": paymentHeader(offer, WEATHER) } }))
        .status,
    ).to.equal(200);
    const low = await fetch(`${running.base}/weather`, {
      headers: { "payment-signature": paymentHeader(offer, WEATHER + 1n) },
    });
    expect(low.status).to.equal(402);
    const body = await required(low);
    expect(body.error).to.equal("insufficient_amount");
    expect(body.accepts[0].extra.channelState?.chargedTotal).to.equal("1000");
    const next = BigInt(body.accepts[0].extra.channelState!.chargedTotal) + BigInt(offer.amount);
    const ok = await fetch(`${running.base}/weather`, { headers: { "payment-signature": paymentHeader(offer, next) } });
    expect(ok.status).to.equal(200);
  });

  it("answers 503 store_unavailable when the voucher cannot be made durable", async () => {
    running.h.store.failRecordVoucher = true;
    const offer = running.h.gate.offer(WEATHER, "fixed");
    const response = await fetch(`${running.base}/weather`, {
      headers: { "payment-signature": paymentHeader(offer, WEATHER) },
    });
    expect(response.status).to.equal(REASONS.store_unavailable);
    expect((await required(response)).error).to.equal("store_unavailable");
    expect(running.served.get("/weather")).to.equal(undefined);
    running.h.store.failRecordVoucher = false;
    const retry = await fetch(`${running.base}/weather`, {
      headers: { "payment-signature": paymentHeader(offer, WEATHER) },
    });
    expect(retry.status).to.equal(200);
  });

  it("serves concurrent requests paid by a client picking next = max(signedMax + 1, charged + inFlight + price)", async () => {
    const offer = running.h.gate.offer(WEATHER, "fixed");
    let signedMax = 0n;
    let chargedKnown = 0n;
    let inFlight = 0n;
    const one = async () => {
      const next = [signedMax + 1n, chargedKnown + inFlight + WEATHER].reduce((a, b) => (a > b ? a : b));
      signedMax = next;
      inFlight += WEATHER;
      const response = await fetch(`${running.base}/weather`, {
        headers: { "payment-signature": paymentHeader(offer, next) },
      });
      inFlight -= WEATHER;
      const paid = paymentResponse(response);
      const total = BigInt(paid.extra.chargedTotal);
      if (total > chargedKnown) chargedKnown = total;
      return response.status;
    };
    const statuses = await Promise.all(Array.from({ length: 32 }, one));
    expect(statuses.every((s) => s === 200)).to.equal(true);
    expect(running.h.engine.channelView(CH)?.chargedTotal).to.equal((32n * WEATHER).toString());
    expect(running.served.get("/weather")).to.equal(32);
  });

  it("prices requests with a function when given one", async () => {
    await stop(running);
    running = await start(harness(), (req) =>
      req.path.startsWith("/api/") ? { price: 5n, pricing: "fixed" } : undefined,
    );
    const offer = (await required(await fetch(`${running.base}/api/x`))).accepts[0];
    expect(offer.amount).to.equal("5");
    expect(await fetch(`${running.base}/weather`).then((r) => r.status)).to.equal(200);
  });

  it("passes a pricing function's exception to Express's error handler", async () => {
    await stop(running);
    running = await start(harness(), () => {
      throw new Error("pricing failed");
    });
    const response = await fetch(`${running.base}/weather`);
    expect(response.status).to.equal(500);
    expect(running.served.get("/weather")).to.equal(undefined);
  });
});
