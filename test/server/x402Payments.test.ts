import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { x402ResourceServer } from "@x402/express";
import { expect } from "chai";
import { channelIdHex } from "../../src/protocol/headers";
import { verifyReceipt, type SignedReceipt } from "../../src/protocol/receipt";
import { ChannelFacilitatorClient } from "../../src/server/x402/channelFacilitator";
import { ChannelPayments } from "../../src/server/x402/channelPayments";
import { ChannelSchemeServer } from "../../src/server/x402/channelScheme";
import {
  ASSET,
  CHAIN_ID,
  CONTRACT,
  NETWORK,
  PAYEE,
  PAYER,
  harness,
  payerChannel,
  signVoucher,
  type Harness,
} from "../helpers/memoryStore";

/** The x402 plug-in's payment steps (verify → settle, or cancel) over the engine and a memory store. */

const PRICE = 1_000n;
const CH = payerChannel();
const REQUEST = { method: "GET", pathAndQuery: "/weather?city=Lisbon" };

/** paychan's figures in a PAYMENT-RESPONSE's extra. */
interface SettleExtra {
  readonly channelId: string;
  readonly voucherAmount: string;
  readonly chargedTotal: string;
  readonly remaining: string;
  readonly receipt: SignedReceipt;
}

function setup(storeOptions: Parameters<typeof harness>[0] = {}): { h: Harness; payments: ChannelPayments } {
  let h: Harness | undefined = undefined;
  h = harness({ ...storeOptions, engine: { loadLedger: (channelId) => h!.store.getLedger(channelId) } });
  const payments = new ChannelPayments({ engine: h.engine, store: h.store, receipts: h.receipts, network: NETWORK });
  return { h, payments };
}

function requirements(h: Harness, price = PRICE): PaymentRequirements {
  return h.offer(price) as unknown as PaymentRequirements;
}

/** A fresh payload object, as x402 decodes one per request. */
function payload(h: Harness, amount: bigint, price = PRICE): PaymentPayload {
  return {
    x402Version: 2,
    accepted: requirements(h, price),
    payload: { channelId: channelIdHex(CH), amount: amount.toString(), signature: signVoucher(CH, amount) },
  };
}

async function verified(payments: ChannelPayments, h: Harness, amount: bigint): Promise<PaymentPayload> {
  const p = payload(h, amount);
  expect(await payments.verify(p, requirements(h), REQUEST)).to.deep.equal({ ok: true, payer: PAYER });
  return p;
}

async function settled(
  payments: ChannelPayments,
  h: Harness,
  p: PaymentPayload,
  price = PRICE,
): Promise<SettleExtra & { amount: string }> {
  const result = await payments.settle(p, requirements(h, price));
  if (!result.ok) throw new Error(`settle refused: ${result.reason}`);
  return { ...(result.response.extra as unknown as SettleExtra), amount: result.response.amount! };
}

describe("x402 plug-in: channel payments (verify, settle, cancel)", () => {
  it("settles into x402's SettleResponse with paychan's figures and a receipt under extra, once durable", async () => {
    const { h, payments } = setup({ store: { delayMs: 5 } });
    const p = await verified(payments, h, PRICE);
    expect(h.store.recordCalls).to.equal(0); // nothing is written before the handler succeeded
    const result = await payments.settle(p, requirements(h));
    expect(result.ok).to.equal(true);
    if (!result.ok) return;
    expect(result.response).to.deep.include({
      success: true,
      transaction: "",
      network: NETWORK,
      payer: PAYER,
      amount: "1000",
    });
    const extra = result.response.extra as unknown as SettleExtra;
    expect(extra).to.deep.include({ channelId: channelIdHex(CH), voucherAmount: "1000", chargedTotal: "1000" });
    expect(await verifyReceipt(extra.receipt, h.receipts.address, CHAIN_ID, CONTRACT)).to.equal(true);
    expect(h.store.findVoucher(CH, PRICE)).to.deep.include({ charge: PRICE, chargedTotal: PRICE });
  });

  it("stores charged totals in the order vouchers are stored, whatever order they were verified in", async () => {
    const { h, payments } = setup();
    const first = await verified(payments, h, PRICE);
    const second = await verified(payments, h, 2n * PRICE);
    // The second request finishes first: its total counts what is stored, not what is still reserved.
    expect((await settled(payments, h, second)).chargedTotal).to.equal("1000");
    expect((await settled(payments, h, first)).chargedTotal).to.equal("2000");
    expect(h.store.getLedger(CH)).to.deep.include({ chargedTotal: 2n * PRICE, highestAmount: 2n * PRICE });
  });

  it("cancel drops the voucher of a failed request: not stored, not charged, not the best voucher", async () => {
    const { h, payments } = setup();
    await settled(payments, h, await verified(payments, h, PRICE));
    const failed = await verified(payments, h, 2n * PRICE);
    await payments.cancel(failed);
    expect(h.store.findVoucher(CH, 2n * PRICE)).to.equal(undefined);
    expect(h.engine.channelView(CH)).to.deep.include({ chargedTotal: "1000", highestAmount: "1000" });
    // Settling after a cancel finds nothing to settle.
    expect(await payments.settle(failed, requirements(h))).to.deep.equal({ ok: false, reason: "invalid_payload" });
    // The amount is free again: the next request may sign it.
    expect((await settled(payments, h, await verified(payments, h, 2n * PRICE))).chargedTotal).to.equal("2000");
  });

  it("cancel keeps, charged 0, a voucher that lower ones were accepted on", async () => {
    const { h, payments } = setup();
    const high = await verified(payments, h, 10n * PRICE);
    await settled(payments, h, await verified(payments, h, 1n));
    await settled(payments, h, await verified(payments, h, 2n));
    await payments.cancel(high);
    expect(h.store.findVoucher(CH, 10n * PRICE)).to.deep.include({ charge: 0n, chargedTotal: 2n * PRICE });
    expect(h.store.getLedger(CH)).to.deep.include({ chargedTotal: 2n * PRICE, highestAmount: 10n * PRICE });
  });

  it("answers a retry of a stored voucher with the original response, charged once", async () => {
    const { h, payments } = setup();
    const original = await settled(payments, h, await verified(payments, h, PRICE));
    const again = await settled(payments, h, await verified(payments, h, PRICE));
    expect(again).to.deep.equal(original);
    expect(h.store.getLedger(CH)?.chargedTotal).to.equal(PRICE);
    // The same voucher for another request is a reuse.
    const other = payload(h, PRICE);
    const verdict = await payments.verify(other, requirements(h), { method: "GET", pathAndQuery: "/other" });
    expect(verdict).to.deep.include({ ok: false, reason: "voucher_reused" });
  });

  it("a retry sent while the first request is still in its handler waits for it; after a cancel it is served anew", async () => {
    const { h, payments } = setup();
    const first = await verified(payments, h, PRICE);
    const retry = payload(h, PRICE);
    const pending = payments.verify(retry, requirements(h), REQUEST);
    await payments.cancel(first);
    expect(await pending).to.deep.equal({ ok: true, payer: PAYER });
    expect((await settled(payments, h, retry)).chargedTotal).to.equal("1000");
  });

  it("takes back a reservation neither settled nor cancelled within the offer's timeout", async () => {
    const { h, payments } = setup();
    const p = payload(h, PRICE);
    const quick = { ...requirements(h), maxTimeoutSeconds: 1 };
    expect(await payments.verify(p, quick, REQUEST)).to.deep.equal({ ok: true, payer: PAYER });
    expect(h.engine.channelView(CH)?.chargedTotal).to.equal("1000");
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(h.engine.channelView(CH)?.chargedTotal).to.equal("0");
    expect(await payments.settle(p, quick)).to.deep.equal({ ok: false, reason: "invalid_payload" });
    expect(h.store.recordCalls).to.equal(0);
  });

  it("refuses with the reason code and keeps the channel view for the 402", async () => {
    const { h, payments } = setup();
    await settled(payments, h, await verified(payments, h, PRICE));
    const short = payload(h, PRICE + 10n);
    const verdict = await payments.verify(short, requirements(h), REQUEST);
    expect(verdict).to.deep.include({ ok: false, reason: "insufficient_amount" });
    expect(payments.refusedChannel(short)).to.deep.include({ chargedTotal: "1000", highestAmount: "1000" });
    expect(await payments.settle(short, requirements(h))).to.deep.equal({ ok: false, reason: "invalid_payload" });
    const malformed = { ...payload(h, 2n * PRICE), payload: { channelId: "nope", amount: "1", signature: "0x" } };
    expect(await payments.verify(malformed, requirements(h), REQUEST)).to.deep.equal({
      ok: false,
      reason: "invalid_payload",
    });
  });

  it("settles an upto route for the final amount x402's settlement override gives", async () => {
    const { h, payments } = setup();
    const p = await verified(payments, h, PRICE);
    const result = await settled(payments, h, p, 400n);
    expect(result).to.deep.include({ amount: "400", chargedTotal: "400" });
    expect(h.engine.channelView(CH)?.chargedTotal).to.equal("400");
  });

  it("a store that cannot write refuses with store_unavailable and returns the charge", async () => {
    const { h, payments } = setup({ store: { failRecordVoucher: true } });
    const p = await verified(payments, h, PRICE);
    expect(await payments.settle(p, requirements(h))).to.deep.equal({ ok: false, reason: "store_unavailable" });
    expect(h.engine.channelView(CH)?.chargedTotal).to.equal("0");
  });
});

describe("x402 plug-in: the channel scheme's prices and terms", () => {
  const { h, payments } = setup();
  const scheme = new ChannelSchemeServer({
    payments,
    network: NETWORK,
    asset: ASSET,
    payee: PAYEE,
    decimals: 6,
    offer: (price, pricing) => h.gate.offer(price, pricing),
  });

  it("builds, inside x402's own resource server, the offer paychan's gate makes", async () => {
    const resourceServer = new x402ResourceServer(new ChannelFacilitatorClient(payments, NETWORK)).register(
      NETWORK,
      scheme,
    );
    await resourceServer.initialize();
    const built = await resourceServer.buildPaymentRequirements({
      scheme: "channel",
      network: NETWORK,
      payTo: PAYEE,
      price: "$0.001",
      maxTimeoutSeconds: 60,
    });
    expect(built).to.deep.equal([h.gate.offer(1000n, "fixed")]);
  });

  it("a refusal naming a known channel carries the server's view in the 402's extra.channelState", async () => {
    const resourceServer = new x402ResourceServer(new ChannelFacilitatorClient(payments, NETWORK)).register(
      NETWORK,
      scheme,
    );
    await resourceServer.initialize();
    await settled(payments, h, await verified(payments, h, PRICE));
    const short = payload(h, PRICE + 10n);
    expect(await payments.verify(short, requirements(h), REQUEST)).to.deep.include({ reason: "insufficient_amount" });
    const resource = { url: "http://localhost/weather?city=Lisbon" };
    const refusal = await resourceServer.createPaymentRequiredResponse(
      [requirements(h)],
      resource,
      "insufficient_amount",
      undefined,
      undefined,
      short,
    );
    expect(refusal.error).to.equal("insufficient_amount");
    expect(refusal.accepts[0].extra.channelState).to.deep.equal(h.engine.channelView(CH));
    // Without a payload (an unpaid request) the offer stays as it is.
    const unpaid = await resourceServer.createPaymentRequiredResponse([requirements(h)], resource);
    expect(unpaid.accepts[0].extra).not.to.have.property("channelState");
  });

  it("parses dollar strings, x402 money and atomic amounts in the channel token", async () => {
    expect(await scheme.parsePrice("$0.001", NETWORK)).to.deep.equal({ asset: ASSET, amount: "1000" });
    expect(await scheme.parsePrice("0.25", NETWORK)).to.deep.equal({ asset: ASSET, amount: "250000" });
    expect(await scheme.parsePrice(0.5, NETWORK)).to.deep.equal({ asset: ASSET, amount: "500000" });
    expect(await scheme.parsePrice({ asset: ASSET, amount: "1234" }, NETWORK)).to.deep.equal({
      asset: ASSET,
      amount: "1234",
    });
    await scheme.parsePrice({ asset: PAYEE, amount: "1" }, NETWORK).then(
      () => expect.fail("another token must be refused"),
      (error: Error) => expect(error.message).to.match(/channel payments are in/),
    );
    await scheme.parsePrice("$1", "eip155:1").then(
      () => expect.fail("another network must be refused"),
      (error: Error) => expect(error.message).to.match(/serves eip155:84532/),
    );
  });

  it("adds the gate's offer terms to extra, keeps an upto route's pricing, refuses another payTo", async () => {
    const base = {
      scheme: "channel",
      network: NETWORK,
      asset: ASSET,
      amount: "1000",
      payTo: PAYEE,
      maxTimeoutSeconds: 60,
    } as const;
    const kind = { x402Version: 2, scheme: "channel", network: NETWORK } as const;
    const fixed = await scheme.enhancePaymentRequirements({ ...base, extra: {} }, kind, []);
    expect(fixed.extra).to.deep.equal(h.gate.offer(1000n, "fixed").extra);
    const upto = await scheme.enhancePaymentRequirements({ ...base, extra: { pricing: "upto" } }, kind, []);
    expect(upto.extra.pricing).to.equal("upto");
    await scheme.enhancePaymentRequirements({ ...base, payTo: ASSET, extra: {} }, kind, []).then(
      () => expect.fail("another payee must be refused"),
      (error: Error) => expect(error.message).to.match(/must pay this server's payee/),
    );
  });
});
