import { expect } from "chai";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Address, Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { createPayingFetch, fileStateStore, loadOrCreateSessionKey, PaymentLimitError } from "../../src/client";
import {
  channelIdHex,
  decodePaymentSignature,
  encodeHeader,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { ReceiptSigner, requestHash } from "../../src/protocol/receipt";
import { channelIdFor } from "../../src/protocol/voucher";

/**
 * createPayingFetch against an in-memory server that applies the protocol's acceptance rule
 * (`chargedTotal + price ≤ max(highestAmount, amount)`, each amount once) and answers in a random
 * order, so the client's amount rule is checked under arbitrary arrival orders without a chain.
 */

const CONTRACT: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const RECEIPT_KEY: Hex = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const CHAIN_ID = 84532;

function fakeServer(price: bigint, seed = 1) {
  const signer = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT);
  const offer: ChannelOffer = {
    scheme: "channel",
    network: `eip155:${CHAIN_ID}`,
    amount: price.toString(),
    asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    payTo: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    maxTimeoutSeconds: 60,
    extra: {
      name: "USDC",
      version: "2",
      contract: CONTRACT,
      pricing: "fixed",
      minDeposit: "1000000",
      minWithdrawDelay: 3600,
      decimals: 6,
      receiptSigner: signer.address,
    },
  };
  const ledger = { chargedTotal: 0n, highestAmount: 0n, used: new Set<bigint>(), deposit: 10n ** 12n };
  const stats = { requests: 0, vouchers: 0, refusals: [] as string[], amounts: [] as bigint[], failNext: 0 };
  let rng = seed;
  const random = () => (rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const refuse = (error: string | undefined, channelId?: bigint): Response => {
    const body: PaymentRequired = {
      x402Version: 2,
      ...(error ? { error: error as PaymentRequired["error"] } : {}),
      resource: { url: "http://api.test/x" },
      accepts: [
        channelId === undefined
          ? offer
          : {
              ...offer,
              extra: {
                ...offer.extra,
                channelState: {
                  channelId: channelIdHex(channelId),
                  deposit: ledger.deposit.toString(),
                  chargedTotal: ledger.chargedTotal.toString(),
                  highestAmount: ledger.highestAmount.toString(),
                  remaining: (ledger.deposit - ledger.chargedTotal).toString(),
                  withdrawReadyAt: 0,
                },
              },
            },
      ],
    };
    return new Response(JSON.stringify(body), {
      status: 402,
      headers: { [PAYMENT_REQUIRED_HEADER]: encodeHeader(body) },
    });
  };
  const fetchImpl: typeof fetch = async (input, init) => {
    stats.requests++;
    const url = new URL(input.toString());
    // Arrive in a random order.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 5)));
    const header = new Headers(init?.headers).get(PAYMENT_SIGNATURE_HEADER);
    if (!header) return refuse(undefined);
    stats.vouchers++;
    const decoded = decodePaymentSignature(header);
    if (!decoded.ok) throw new Error(decoded.reason);
    const { channelId, amount } = decoded.voucher;
    stats.amounts.push(amount);
    if (stats.failNext > 0) {
      stats.failNext--;
      const body = { x402Version: 2, error: "store_unavailable", resource: { url: "x" }, accepts: [offer] };
      return new Response(JSON.stringify(body), {
        status: 503,
        headers: { [PAYMENT_REQUIRED_HEADER]: encodeHeader(body) },
      });
    }
    let error: string | undefined;
    if (ledger.used.has(amount)) error = "voucher_reused";
    else if (ledger.chargedTotal + price > (amount > ledger.highestAmount ? amount : ledger.highestAmount)) {
      error = "insufficient_amount";
    }
    if (error) {
      stats.refusals.push(error);
      return refuse(error, channelId);
    }
    ledger.used.add(amount);
    ledger.chargedTotal += price;
    if (amount > ledger.highestAmount) ledger.highestAmount = amount;
    const receipt = signer.sign({
      channelId,
      voucherAmount: amount,
      charge: price,
      chargedTotal: ledger.chargedTotal,
      request: requestHash(init?.method ?? "GET", url.pathname + url.search),
      issuedAt: Math.floor(Date.now() / 1000),
    });
    const paid: SettleResponse = {
      success: true,
      transaction: "",
      network: offer.network,
      payer: offer.payTo,
      amount: price.toString(),
      extra: {
        channelId: channelIdHex(channelId),
        voucherAmount: amount.toString(),
        chargedTotal: ledger.chargedTotal.toString(),
        remaining: (ledger.deposit - ledger.chargedTotal).toString(),
        receipt,
      },
    };
    // Answers, too, come back in a random order.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 5)));
    return new Response("ok", { status: 200, headers: { [PAYMENT_RESPONSE_HEADER]: encodeHeader(paid) } });
  };
  return { fetchImpl, ledger, stats, offer };
}

describe("client: createPayingFetch amount rule and state file (no chain)", () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), "paychan-client-unit-"))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("pays waves of concurrent requests arriving in random order without a single refusal", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const server = fakeServer(1_000n, 7);
    const pay = createPayingFetch(server.fetchImpl, {
      sessionAccount: session,
      channel: channelIdFor(session.address, 0n),
      maxPerRequest: 1_000n,
      maxTotal: 10n ** 9n,
      store: fileStateStore(path.join(dir, "state.json"), { fsync: false }),
    });
    for (let wave = 0; wave < 5; wave++) {
      const responses = await Promise.all(Array.from({ length: 40 }, (_, i) => pay(`http://api.test/x?${wave}-${i}`)));
      expect(responses.map((r) => r.status)).to.deep.equal(new Array(40).fill(200));
    }
    expect(server.stats.refusals).to.deep.equal([]);
    expect(server.ledger.chargedTotal).to.equal(200_000n);
    // Waves started from a quiet channel: the best voucher is exactly what was charged.
    expect(server.ledger.highestAmount).to.equal(200_000n);
    expect(server.stats.vouchers).to.equal(200);
    // One unpaid round trip learned the price; every later request was paid directly.
    expect(server.stats.requests).to.equal(200 + 40);
  });

  it("keeps overlapping (not wave-aligned) requests valid too", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const server = fakeServer(777n, 3);
    const pay = createPayingFetch(server.fetchImpl, {
      sessionAccount: session,
      channel: channelIdFor(session.address, 5n),
      maxPerRequest: 1_000n,
      maxTotal: 10n ** 9n,
    });
    let next = 0;
    const worker = async () => {
      while (next < 300) {
        const r = await pay(`http://api.test/x?${next++}`);
        expect(r.status).to.equal(200);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    expect(server.stats.refusals).to.deep.equal([]);
    expect(server.ledger.chargedTotal).to.equal(777n * BigInt(next));
    // Then one at a time: the best voucher converges back to the charged total.
    for (let i = 0; i < 40; i++) await pay(`http://api.test/x?tail${i}`);
    expect(server.ledger.highestAmount).to.equal(server.ledger.chargedTotal);
  });

  it("checks maxTotal against spent plus in-flight reservations before signing", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const server = fakeServer(1_000n);
    const pay = createPayingFetch(server.fetchImpl, {
      sessionAccount: session,
      channel: channelIdFor(session.address, 0n),
      maxPerRequest: 1_000n,
      maxTotal: 3_500n,
    });
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => pay(`http://api.test/x?${i}`)));
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused).to.have.length(2);
    for (const r of refused) expect((r as PromiseRejectedResult).reason).to.be.instanceOf(PaymentLimitError);
    expect(server.stats.vouchers).to.equal(3);
    expect(pay.spent).to.equal(3_000n);
  });

  it("resends the same voucher after store_unavailable (503), charged once", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const server = fakeServer(1_000n);
    const pay = createPayingFetch(server.fetchImpl, {
      sessionAccount: session,
      channel: channelIdFor(session.address, 0n),
      maxPerRequest: 1_000n,
      maxTotal: 10_000n,
    });
    server.stats.failNext = 1;
    const response = await pay("http://api.test/x");
    expect(response.status).to.equal(200);
    expect(server.stats.amounts).to.deep.equal([1_000n, 1_000n]);
    expect(server.ledger.chargedTotal).to.equal(1_000n);
    server.stats.failNext = 3; // more than the client resends: the 503 reaches the caller, unpaid
    const failed = await pay("http://api.test/x?again");
    expect(failed.status).to.equal(503);
    expect(failed.payment).to.equal(undefined);
    expect(pay.reserved).to.equal(0n);
  });

  it("refuses a channel whose signer is not the session account", async () => {
    const session = privateKeyToAccount(generatePrivateKey());
    const other = privateKeyToAccount(generatePrivateKey());
    const server = fakeServer(1_000n);
    const pay = createPayingFetch(server.fetchImpl, {
      sessionAccount: session,
      channel: channelIdFor(other.address, 0n),
      maxPerRequest: 1_000n,
      maxTotal: 10_000n,
    });
    let error: unknown;
    await pay("http://api.test/x").catch((e: unknown) => (error = e));
    expect(String(error)).to.match(/not by the session account/);
    expect(server.stats.vouchers).to.equal(0);
    expect(pay.reserved).to.equal(0n);
  });

  it("state file: atomic rewrite (no temp left), survives reload, refuses a corrupt file", () => {
    const file = path.join(dir, "nested", "state.json");
    const store = fileStateStore(file);
    store.load().channels["k"] = { channelId: "0x1", signedMax: "5", chargedKnown: "4", receipts: 1 };
    store.save();
    store.load().channels["k"].signedMax = "6";
    store.save();
    expect(readdirSync(path.dirname(file))).to.deep.equal(["state.json"]);
    expect(fileStateStore(file).load().channels["k"].signedMax).to.equal("6");
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    writeFileSync(file, "{ not json");
    expect(() => fileStateStore(file).load()).to.throw();
  });

  it("session key file: created once with mode 0600, then reused", () => {
    const file = path.join(dir, "session.key");
    const a = loadOrCreateSessionKey(file);
    const b = loadOrCreateSessionKey(file);
    expect(b.address).to.equal(a.address);
    expect(statSync(file).mode & 0o777).to.equal(0o600);
    expect(readFileSync(file, "utf8").trim()).to.match(/^0x[0-9a-f]{64}$/);
  });
});
