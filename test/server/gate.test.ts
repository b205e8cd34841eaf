import { expect } from "chai";
import type { Hex } from "viem";
import {
  SCHEME,
  X402_VERSION,
  channelIdHex,
  decodeHeader,
  encodeHeader,
  encodePaymentSignature,
  type ChannelOffer,
  type PaymentRequired,
} from "../../src/protocol/headers";
import { REASONS } from "../../src/protocol/reasons";
import { parseReceipt, requestHash, verifyReceipt } from "../../src/protocol/receipt";
import { toCompactSignature } from "../../src/protocol/voucher";
import {
  PaymentGate,
  type GateResult,
  type PaidRequest,
  type ChannelPayment,
  type Refusal,
} from "../../src/server/gate";
import {
  ASSET,
  CHAIN_ID,
  CONTRACT,
  NETWORK,
  OTHER_ADDRESS,
  PAYEE,
  PAYEE_KEY,
  PAYER,
  RECEIPT_KEY,
  TERMS,
  channelRecord,
  harness,
  payerChannel,
  signVoucher,
  type Harness,
} from "../helpers/memoryStore";
import { createRandom } from "../helpers/random";
import { validPaymentRequired, validSettleResponse } from "../helpers/x402Wire";
import { privateKeyToAccount } from "viem/accounts";

const P = 1_000n;
const CH = payerChannel();
const RECEIPT_SIGNER = privateKeyToAccount(RECEIPT_KEY).address;
const MARGIN = 3_600;

function request(header: string | undefined, overrides: Partial<PaidRequest> = {}): PaidRequest {
  return {
    method: "GET",
    pathAndQuery: "/weather?city=Lisbon",
    url: "http://127.0.0.1/weather?city=Lisbon",
    paymentHeader: header,
    price: P,
    pricing: "fixed",
    ...overrides,
  };
}

function paid(result: GateResult): ChannelPayment {
  if (!result.ok) throw new Error(`expected a payment, got ${result.status} ${result.reason}`);
  if (result.scheme !== "channel") throw new Error(`expected a channel payment, got ${result.scheme}`);
  return result;
}

function refused(result: GateResult, reason: keyof typeof REASONS): Refusal {
  if (result.ok) throw new Error(`expected ${reason}, got a payment`);
  expect(result.reason).to.equal(reason);
  expect(result.status).to.equal(REASONS[reason]);
  expect(decodeHeader<PaymentRequired>(result.headers["payment-required"])).to.deep.equal(result.body);
  validPaymentRequired(result.headers["payment-required"]);
  return result;
}

function charged(h: Harness, channelId = CH): bigint {
  return BigInt(h.engine.channelView(channelId)!.chargedTotal);
}

/** A header with the voucher of `amount` and the accepted terms changed by `edit`. */
function customHeader(amount: bigint, edit: (body: Record<string, unknown>) => void): string {
  const body = JSON.parse(
    Buffer.from(
      encodePaymentSignature(harness().offer(P), {
        channelId: channelIdHex(CH),
        amount: amount.toString(),
        signature: signVoucher(CH, amount),
      }),
      "base64",
    ).toString("utf8"),
  ) as Record<string, unknown>;
  edit(body);
  return encodeHeader(body);
}

function accepted(body: Record<string, unknown>): Record<string, unknown> {
  return body.accepted as Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("PaymentGate", () => {
  describe("402 without payment", () => {
    it("answers a request without PAYMENT-SIGNATURE with payment_required and the full offer", async () => {
      const h = harness();
      for (const header of [undefined, ""]) {
        const result = refused(await h.gate.authorize(request(header, { description: "Weather" })), "payment_required");
        expect(result.body).to.deep.equal({
          x402Version: X402_VERSION,
          resource: { url: "http://127.0.0.1/weather?city=Lisbon", description: "Weather" },
          accepts: [
            {
              scheme: SCHEME,
              network: NETWORK,
              amount: "1000",
              asset: ASSET,
              payTo: PAYEE,
              maxTimeoutSeconds: 60,
              extra: {
                name: "USDC",
                version: "2",
                contract: CONTRACT,
                pricing: "fixed",
                minDeposit: "1000000",
                minWithdrawDelay: 3600,
                decimals: 6,
                receiptSigner: RECEIPT_SIGNER,
              },
            },
          ],
        });
        expect(result.body).not.to.have.property("error");
        expect(result.body.accepts[0].extra).not.to.have.property("channelState");
      }
    });

    it("advertises the relay and maxTimeoutSeconds when configured, and upto pricing", async () => {
      const h = harness();
      const gate = new PaymentGate({
        engine: h.engine,
        store: h.store,
        receipts: h.receipts,
        terms: { ...TERMS, relay: "/paychan/relay", maxTimeoutSeconds: 30 },
      });
      const offer = gate.offer(5n, "upto");
      expect(offer.maxTimeoutSeconds).to.equal(30);
      expect(offer.extra.relay).to.equal("/paychan/relay");
      expect(offer.extra.pricing).to.equal("upto");
      expect(offer.amount).to.equal("5");
    });
  });

  describe("decoding (402: a malformed payment is a payment verdict)", () => {
    const cases: [string, string, keyof typeof REASONS][] = [
      ["not base64", "%%%%", "malformed_header"],
      ["base64 of non-JSON", Buffer.from("hello").toString("base64"), "malformed_header"],
      ["a JSON array", encodeHeader([1, 2]), "malformed_header"],
      ["oversized", "A".repeat(8196), "header_too_large"],
      ["x402Version 1", encodeHeader({ x402Version: 1, accepted: {}, payload: {} }), "unsupported_version"],
      [
        "no payload",
        encodeHeader({ x402Version: 2, accepted: { scheme: "channel", network: NETWORK } }),
        "invalid_payload",
      ],
    ];
    for (const [name, header, reason] of cases) {
      it(`refuses ${name} with ${reason}`, async () => {
        const h = harness();
        refused(await h.gate.authorize(request(header)), reason);
        expect(h.verifications()).to.equal(0);
      });
    }

    it("refuses a signature that is not 64/65 bytes of hex with malformed_signature", async () => {
      const h = harness();
      const header = h.header(P, P, { signature: "0x1234" });
      refused(await h.gate.authorize(request(header)), "malformed_signature");
    });

    it("refuses a structurally invalid signature the verifier rejects with malformed_signature", async () => {
      const h = harness();
      const sig = `${signVoucher(CH, P).slice(0, 130)}1f` as Hex;
      refused(await h.gate.authorize(request(h.header(P, P, { signature: sig }))), "malformed_signature");
      expect(charged(h)).to.equal(0n);
    });
  });

  describe("offer checks", () => {
    it("refuses another scheme, network, contract, asset or payTo", async () => {
      const h = harness();
      const cases: [(b: Record<string, unknown>) => void, keyof typeof REASONS][] = [
        [(b) => (accepted(b).scheme = "exact"), "unsupported_scheme"],
        [(b) => (accepted(b).network = "eip155:8453"), "wrong_network"],
        [(b) => (accepted(b).extra = { contract: OTHER_ADDRESS }), "wrong_contract"],
        [(b) => (accepted(b).asset = OTHER_ADDRESS), "wrong_token"],
        [(b) => (accepted(b).payTo = OTHER_ADDRESS), "wrong_payee"],
      ];
      for (const [edit, reason] of cases) refused(await h.gate.authorize(request(customHeader(P, edit))), reason);
      expect(h.verifications()).to.equal(0);
      expect(charged(h)).to.equal(0n);
    });

    it("compares addresses case-insensitively and treats omitted asset, payTo and contract as matching", async () => {
      const h = harness();
      const lower = customHeader(P, (b) => {
        const a = accepted(b);
        a.asset = ASSET.toLowerCase();
        a.payTo = PAYEE.toUpperCase().replace("0X", "0x");
        a.extra = { contract: CONTRACT.toLowerCase() };
      });
      paid(await h.gate.authorize(request(lower)));
      const bare = customHeader(2n * P, (b) => {
        const a = accepted(b);
        delete a.asset;
        delete a.payTo;
        delete a.extra;
      });
      paid(await h.gate.authorize(request(bare)));
      expect(charged(h)).to.equal(2n * P);
    });
  });

  describe("channel rules through the gate", () => {
    it("refuses an unknown channel when it cannot fetch channels", async () => {
      const h = harness({ channels: [] });
      refused(await h.gate.authorize(request(h.header(P, P))), "unknown_channel");
    });

    it("fetches an unknown channel once, then accepts it and serves later requests from memory", async () => {
      const fetched: bigint[] = [];
      const h = harness({
        channels: [],
        gate: {
          fetchChannel: async (id) => {
            fetched.push(id);
            return channelRecord({ channelId: id });
          },
        },
      });
      paid(await h.gate.authorize(request(h.header(P, P))));
      paid(await h.gate.authorize(request(h.header(2n * P, P))));
      expect(fetched).to.deep.equal([CH]);
      expect(charged(h)).to.equal(2n * P);
    });

    it("looks up an unknown channel only for a validly signed voucher", async () => {
      const fetched: bigint[] = [];
      const h = harness({
        channels: [],
        gate: {
          fetchChannel: async (id) => {
            fetched.push(id);
            return undefined;
          },
        },
      });
      const forged = h.header(P, P, { signature: signVoucher(CH, P + 1n) });
      refused(await h.gate.authorize(request(forged)), "invalid_signature");
      expect(fetched).to.deep.equal([]);
      refused(await h.gate.authorize(request(h.header(P, P))), "unknown_channel");
      expect(fetched).to.deep.equal([CH]);
    });

    it("answers wrong_payee for a channel found on-chain that pays another payee, and does not keep it", async () => {
      const fetched: bigint[] = [];
      const h = harness({
        channels: [],
        gate: {
          fetchChannel: async (id) => {
            fetched.push(id);
            return channelRecord({ channelId: id, payee: OTHER_ADDRESS });
          },
        },
      });
      refused(await h.gate.authorize(request(h.header(P, P))), "wrong_payee");
      expect(h.engine.record(CH)).to.equal(undefined);
      expect(fetched).to.deep.equal([CH]);
    });

    it("refuses unknown_channel when the fetch finds nothing or fails", async () => {
      for (const fetchChannel of [async () => undefined, async () => Promise.reject(new Error("rpc down"))]) {
        const h = harness({ channels: [], gate: { fetchChannel } });
        refused(await h.gate.authorize(request(h.header(P, P))), "unknown_channel");
      }
    });

    it("refuses a channel of another payee or token, closed, or withdrawing inside the margin", async () => {
      const now = Math.floor(Date.now() / 1000);
      const cases: [Partial<Parameters<typeof channelRecord>[0]>, keyof typeof REASONS][] = [
        [{ payee: OTHER_ADDRESS }, "wrong_payee"],
        [{ token: OTHER_ADDRESS }, "wrong_token"],
        [{ status: "closed" }, "channel_closed"],
        [{ withdrawDelay: 59 }, "withdraw_delay_too_short"],
        [{ withdrawReadyAt: now + MARGIN - 60 }, "channel_withdrawing"],
      ];
      for (const [overrides, reason] of cases) {
        const h = harness({ channels: [channelRecord(overrides)] });
        refused(await h.gate.authorize(request(h.header(P, P))), reason);
        expect(h.store.recordCalls).to.equal(0);
      }
    });

    it("serves a withdrawing channel whose exit is beyond the safety margin", async () => {
      const now = Math.floor(Date.now() / 1000);
      const h = harness({ channels: [channelRecord({ withdrawReadyAt: now + MARGIN + 60 })] });
      paid(await h.gate.authorize(request(h.header(P, P))));
    });

    it("refuses a voucher above the deposit", async () => {
      const h = harness({ channels: [channelRecord({ deposit: 5_000n })] });
      const result = refused(await h.gate.authorize(request(h.header(5_001n, P))), "amount_exceeds_deposit");
      expect((result.body.accepts[0] as ChannelOffer).extra.channelState?.deposit).to.equal("5000");
    });

    it("refuses an insufficient voucher with the channel view, and the resynchronized voucher pays", async () => {
      const h = harness();
      paid(await h.gate.authorize(request(h.header(3n * P, 3n * P), { price: 3n * P })));
      const result = refused(await h.gate.authorize(request(h.header(3n * P + 1n, P))), "insufficient_amount");
      const view = (result.body.accepts[0] as ChannelOffer).extra.channelState!;
      expect(view.chargedTotal).to.equal((3n * P).toString());
      expect(view.highestAmount).to.equal((3n * P).toString());
      expect(view.remaining).to.equal((10_000_000n - 3n * P).toString());
      expect(result.body.error).to.equal("insufficient_amount");
      const next = BigInt(view.chargedTotal) + P;
      const payment = paid(await h.gate.authorize(request(h.header(next, P))));
      expect(payment.response().extra.chargedTotal).to.equal((4n * P).toString());
    });

    it("refuses an invalid or high-s signature with 402 and charges nothing", async () => {
      const h = harness();
      const wrongKey = signVoucher(CH, P, { key: PAYEE_KEY });
      refused(await h.gate.authorize(request(h.header(P, P, { signature: wrongKey }))), "invalid_signature");
      const highS = signVoucher(CH, P, { highS: true });
      refused(await h.gate.authorize(request(h.header(P, P, { signature: highS }))), "high_s_signature");
      expect(charged(h)).to.equal(0n);
      expect(h.store.recordCalls).to.equal(0);
      paid(await h.gate.authorize(request(h.header(P, P))));
    });
  });

  describe("accepted payments", () => {
    it("resolves only once the voucher is durable, with a PAYMENT-RESPONSE whose receipt verifies", async () => {
      const h = harness({ store: { delayMs: 20 } });
      const header = h.header(P, P);
      const payment = paid(await h.gate.authorize(request(header)));
      const stored = h.store.findVoucher(CH, P);
      expect(stored?.signature).to.equal(signVoucher(CH, P));
      expect(stored?.charge).to.equal(P);
      expect(payment.retry).to.equal(false);
      expect(payment.channelId).to.equal(CH);
      expect(payment.amount).to.equal(P);
      const response = payment.response();
      expect(decodeHeader(payment.responseHeader())).to.deep.equal(response);
      // Built without JSON.stringify on the hot path: byte for byte what encodeHeader gives.
      expect(payment.responseHeader()).to.equal(encodeHeader(response));
      expect(stored!.receipt).to.equal(JSON.stringify(response.extra.receipt));
      expect(await validSettleResponse(payment.responseHeader())).to.deep.equal(response);
      expect(response).to.deep.include({
        success: true,
        transaction: "",
        network: NETWORK,
        payer: PAYER,
        amount: "1000",
      });
      expect(response.extra).to.deep.include({
        channelId: channelIdHex(CH),
        voucherAmount: "1000",
        chargedTotal: "1000",
        remaining: (10_000_000n - P).toString(),
      });
      expect(JSON.parse(stored!.receipt)).to.deep.equal(response.extra.receipt);
      expect(await verifyReceipt(response.extra.receipt, RECEIPT_SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
      const fields = parseReceipt(response.extra.receipt);
      expect(fields.request).to.equal(requestHash("GET", "/weather?city=Lisbon"));
      expect(fields.voucherAmount).to.equal(P);
      expect(fields.chargedTotal).to.equal(P);
      expect(Math.abs(fields.issuedAt - Date.now() / 1000)).to.be.lessThan(5);
      expect(await verifyReceipt(response.extra.receipt, PAYEE, CHAIN_ID, CONTRACT)).to.equal(false);
    });

    it("reports accepted, rejected and retried payments to the observer", async () => {
      const events: string[] = [];
      const h = harness({
        gate: {
          observer: {
            accepted: (ticket, seconds) => events.push(`accepted ${ticket.amount} ${seconds >= 0}`),
            rejected: (reason) => events.push(`rejected ${reason}`),
            retried: (_id, amount) => events.push(`retried ${amount}`),
          },
        },
      });
      const header = h.header(P, P);
      await h.gate.authorize(request(undefined));
      await h.gate.authorize(request(header));
      await h.gate.authorize(request(header));
      expect(events).to.deep.equal(["rejected payment_required", "accepted 1000 true", "retried 1000"]);
    });
  });

  describe("retries", () => {
    it("answers a retry of the same voucher with the same receipt and does not charge it twice", async () => {
      const h = harness();
      const header = h.header(P, P);
      const first = paid(await h.gate.authorize(request(header)));
      const second = paid(await h.gate.authorize(request(header)));
      expect(second.retry).to.equal(true);
      expect(second.response().extra.receipt).to.deep.equal(first.response().extra.receipt);
      expect(second.response().amount).to.equal("1000");
      expect(second.response().extra.chargedTotal).to.equal("1000");
      expect(await validSettleResponse(second.responseHeader())).to.deep.equal(second.response());
      expect(charged(h)).to.equal(P);
      expect(h.store.recordCalls).to.equal(1);
      second.charge(1n); // a retry cannot change what was charged
      expect(charged(h)).to.equal(P);
    });

    it("refuses the same voucher for another request (a leaked voucher buys nothing)", async () => {
      const h = harness();
      const header = h.header(P, P);
      paid(await h.gate.authorize(request(header)));
      refused(await h.gate.authorize(request(header, { pathAndQuery: "/premium" })), "voucher_reused");
      refused(await h.gate.authorize(request(header, { method: "POST" })), "voucher_reused");
      expect(charged(h)).to.equal(P);
    });

    it("answers a retry that arrives while the original is still being stored, once", async () => {
      const h = harness({ store: { delayMs: 30 } });
      const header = h.header(P, P);
      const [a, b, c] = (await Promise.all([1, 2, 3].map(() => h.gate.authorize(request(header))))).map(paid);
      expect([a.retry, b.retry, c.retry]).to.deep.equal([false, true, true]);
      expect(b.response().extra.receipt).to.deep.equal(a.response().extra.receipt);
      expect(c.response().extra.receipt).to.deep.equal(a.response().extra.receipt);
      expect(h.store.recordCalls).to.equal(1);
      expect(charged(h)).to.equal(P);
    });

    it("refuses a retry after the retry window as voucher_reused, with the channel view", async () => {
      const h = harness({ gate: { retryWindowMs: 30 } });
      const header = h.header(P, P);
      paid(await h.gate.authorize(request(header)));
      paid(await h.gate.authorize(request(header)));
      await sleep(60);
      const result = refused(await h.gate.authorize(request(header)), "voucher_reused");
      expect((result.body.accepts[0] as ChannelOffer).extra.channelState?.chargedTotal).to.equal("1000");
      expect(charged(h)).to.equal(P);
    });

    it("refuses the same amount with a different signature as voucher_reused", async () => {
      const h = harness();
      paid(await h.gate.authorize(request(h.header(P, P))));
      const compact = toCompactSignature(signVoucher(CH, P));
      refused(await h.gate.authorize(request(h.header(P, P, { signature: compact }))), "voucher_reused");
      const other = signVoucher(CH, P, { key: PAYEE_KEY });
      refused(await h.gate.authorize(request(h.header(P, P, { signature: other }))), "voucher_reused");
      expect(charged(h)).to.equal(P);
    });

    it("after a restart, resolves retries and reuse against the store", async () => {
      const first = harness();
      const header = first.header(P, P);
      const original = paid(await first.gate.authorize(request(header)));
      // A new engine and gate over the same store: the engine no longer remembers signatures.
      const h = harness({ ledgers: first.store.loadLedgers() });
      for (const [key, value] of first.store.vouchers) h.store.vouchers.set(key, value);
      expect(charged(h)).to.equal(P);
      const retry = paid(await h.gate.authorize(request(header)));
      expect(retry.retry).to.equal(true);
      expect(retry.response().extra.receipt).to.deep.equal(original.response().extra.receipt);
      const other = signVoucher(CH, P, { key: PAYEE_KEY });
      refused(await h.gate.authorize(request(h.header(P, P, { signature: other }))), "voucher_reused");
      expect(charged(h)).to.equal(P);
    });

    it("below the amount claimed on-chain: answers retries from the store, refuses the rest, also once pruned", async () => {
      // An "upto"-like client signs ahead (highest 10 P, 3 P charged): the headroom must not let
      // an old voucher be charged again once the engine has forgotten it.
      const h = harness();
      const headers = [2n, 6n, 10n].map((k) => h.header(k * P, P));
      for (const header of headers) paid(await h.gate.authorize(request(header)));
      h.engine.applyChannel(channelRecord({ claimedOnChain: 6n * P }));
      const retry = paid(await h.gate.authorize(request(headers[0])));
      expect(retry.retry).to.equal(true);
      refused(await h.gate.authorize(request(h.header(4n * P, P))), "voucher_reused");
      expect(charged(h)).to.equal(3n * P);
      // Pruned (claimed, and older than the retry window): the old voucher is refused, not charged.
      expect(h.store.pruneVouchers([{ channelId: CH, upTo: 6n * P }], Date.now() + 1)).to.deep.equal([2]);
      refused(await h.gate.authorize(request(headers[0])), "voucher_reused");
      refused(await h.gate.authorize(request(headers[1])), "voucher_reused");
      expect(charged(h)).to.equal(3n * P);
      // Above the claim nothing changed: the retry of 10 P is answered, a new voucher is charged.
      expect(paid(await h.gate.authorize(request(headers[2]))).retry).to.equal(true);
      paid(await h.gate.authorize(request(h.header(11n * P, P))));
      expect(charged(h)).to.equal(4n * P);
    });
  });

  describe("store failure", () => {
    it("answers 503 store_unavailable, releases the charge, and a later voucher still works", async () => {
      const h = harness({ store: { failRecordVoucher: true } });
      const header = h.header(P, P);
      refused(await h.gate.authorize(request(header)), "store_unavailable");
      expect(charged(h)).to.equal(0n);
      expect(h.store.findVoucher(CH, P)).to.equal(undefined);
      h.store.failRecordVoucher = false;
      // The same voucher, retried later as the 503 advises, is accepted and charged once.
      const payment = paid(await h.gate.authorize(request(header)));
      expect(payment.retry).to.equal(false);
      expect(payment.response().extra.chargedTotal).to.equal("1000");
      paid(await h.gate.authorize(request(h.header(2n * P, P))));
      expect(charged(h)).to.equal(2n * P);
    });

    it("answers early when asked, before the write is durable; a failed write then releases the charge", async () => {
      const h = harness({ store: { delayMs: 20 } });
      const ok = paid(await h.gate.authorize(request(h.header(P, P)), { early: true }));
      expect(ok.durable, "a promise while the write is pending").to.be.an.instanceOf(Promise);
      expect(h.store.findVoucher(CH, P), "not yet stored").to.equal(undefined);
      expect(await ok.durable).to.equal(true);
      expect(h.store.findVoucher(CH, P)?.chargedTotal).to.equal(P);

      h.store.failRecordVoucher = true;
      const header = h.header(2n * P, P);
      const failing = paid(await h.gate.authorize(request(header), { early: true }));
      expect(charged(h), "reserved while the write is pending").to.equal(2n * P);
      expect(await failing.durable).to.equal(false);
      expect(charged(h), "released once it failed").to.equal(P);
      h.store.failRecordVoucher = false;
      const again = paid(await h.gate.authorize(request(header)));
      expect(again.durable, "the default waits for the write").to.equal(undefined);
      expect(again.retry).to.equal(false);
      expect(charged(h)).to.equal(2n * P);
    });

    it("releases only the failed charge when other vouchers are in flight", async () => {
      const h = harness({ store: { delayMs: 10, failRecordVoucher: (v) => v.amount === 2n * P } });
      const results = await Promise.all([1n, 2n, 3n].map((k) => h.gate.authorize(request(h.header(k * P, P)))));
      paid(results[0]);
      refused(results[1], "store_unavailable");
      paid(results[2]);
      expect(charged(h)).to.equal(2n * P);
      expect(h.store.loadVoucherAmounts(CH)).to.have.members([P, 3n * P]);
      h.store.failRecordVoucher = false;
      paid(await h.gate.authorize(request(h.header(2n * P, P))));
      expect(charged(h)).to.equal(3n * P);
    });
  });

  describe("concurrency", () => {
    for (const S of [0n, 7_000n]) {
      it(`accepts 64 vouchers S+p..S+64p sent concurrently in shuffled order (S = ${S})`, async () => {
        const random = createRandom(Number(S) + 1);
        const ledgers =
          S === 0n
            ? []
            : [
                {
                  channelId: CH,
                  chargedTotal: S,
                  highestAmount: S,
                  highestSignature: signVoucher(CH, S),
                  claimedAmount: 0n,
                },
              ];
        const h = harness({ ledgers, store: { delayMs: () => random.int(15) } });
        const amounts = random.shuffle(Array.from({ length: 64 }, (_, i) => S + BigInt(i + 1) * P));
        const results = await Promise.all(amounts.map((a) => h.gate.authorize(request(h.header(a, P)))));
        const payments = results.map(paid);
        expect(payments.every((p) => !p.retry)).to.equal(true);
        const view = h.engine.channelView(CH)!;
        expect(BigInt(view.chargedTotal) - S).to.equal(64n * P);
        expect(BigInt(view.highestAmount) - S).to.equal(64n * P);
        expect(h.store.recordCalls).to.equal(64);
        // Every request was charged exactly once: the totals its receipt reports are all distinct.
        const totals = payments
          .map((p) => BigInt(p.response().extra.receipt.chargedTotal))
          .sort((a, b) => Number(a - b));
        expect(totals).to.deep.equal(Array.from({ length: 64 }, (_, i) => S + BigInt(i + 1) * P));
        expect(payments.every((p) => p.response().amount === P.toString())).to.equal(true);
      });
    }

    it("charges each of 64 concurrent vouchers once even when every one is also sent twice", async () => {
      const random = createRandom(99);
      const h = harness({ store: { delayMs: () => random.int(10) } });
      const headers = Array.from({ length: 64 }, (_, i) => h.header(BigInt(i + 1) * P, P));
      const sends = random.shuffle([...headers, ...headers]);
      const payments = (await Promise.all(sends.map((x) => h.gate.authorize(request(x))))).map(paid);
      expect(payments.filter((p) => !p.retry)).to.have.length(64);
      expect(payments.filter((p) => p.retry)).to.have.length(64);
      expect(charged(h)).to.equal(64n * P);
      expect(h.store.recordCalls).to.equal(64);
      const byAmount = new Map<bigint, string>();
      for (const p of payments) {
        const receipt = JSON.stringify(p.response().extra.receipt);
        if (byAmount.has(p.amount)) expect(byAmount.get(p.amount)).to.equal(receipt);
        byAmount.set(p.amount, receipt);
      }
    });
  });

  describe('usage-based ("upto") charging', () => {
    it("settles a lower charge: chargedTotal drops and the receipt reflects and verifies the final charge", async () => {
      const h = harness();
      const upto = { price: P, pricing: "upto" as const };
      const payment = paid(await h.gate.authorize(request(h.header(P, P), upto)));
      expect(charged(h)).to.equal(P);
      payment.charge(400n);
      expect(charged(h)).to.equal(400n);
      const response = payment.response();
      expect(response.amount).to.equal("400");
      expect(response.extra.chargedTotal).to.equal("400");
      expect(response.extra.remaining).to.equal((10_000_000n - 400n).toString());
      expect(decodeHeader(payment.responseHeader())).to.deep.equal(response);
      expect(payment.responseHeader()).to.equal(encodeHeader(response));
      expect(parseReceipt(response.extra.receipt).charge).to.equal(400n);
      expect(parseReceipt(response.extra.receipt).chargedTotal).to.equal(400n);
      expect(await verifyReceipt(response.extra.receipt, RECEIPT_SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
      expect(h.store.adjustCalls).to.deep.equal([{ channelId: CH, amount: P, charge: 400n, chargedTotal: 400n }]);
      await sleep(5);
      // A retry answers with the settled receipt from the store.
      const retry = paid(await h.gate.authorize(request(h.header(P, P), upto)));
      expect(retry.response().extra.receipt).to.deep.equal(response.extra.receipt);
      // The headroom freed is spendable: the voucher of P now covers 400 + 600.
      paid(await h.gate.authorize(request(h.header(P - 1n, 600n), { price: 600n })));
    });

    it("charges from the previous charge when charge() is called twice", async () => {
      const h = harness();
      const upto = { price: P, pricing: "upto" as const };
      const payment = paid(await h.gate.authorize(request(h.header(P, P), upto)));
      payment.charge(500n);
      payment.charge(300n);
      expect(charged(h)).to.equal(300n);
      expect(payment.response().extra.chargedTotal).to.equal("300");
      payment.charge(P);
      expect(charged(h)).to.equal(P);
    });

    it("charges the full price without a call, ignores a call with the same charge, refuses more", async () => {
      const h = harness();
      const upto = { price: P, pricing: "upto" as const };
      const payment = paid(await h.gate.authorize(request(h.header(P, P), upto)));
      payment.charge(P);
      expect(h.store.adjustCalls).to.have.length(0);
      expect(() => payment.charge(P + 1n)).to.throw(RangeError);
      expect(() => payment.charge(-1n)).to.throw(RangeError);
      expect(payment.response().amount).to.equal("1000");
      expect(charged(h)).to.equal(P);
    });

    it("settles to zero", async () => {
      const h = harness();
      const payment = paid(await h.gate.authorize(request(h.header(P, P), { pricing: "upto" })));
      payment.charge(0n);
      expect(payment.response().amount).to.equal("0");
      expect(charged(h)).to.equal(0n);
      expect(await verifyReceipt(payment.response().extra.receipt, RECEIPT_SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
    });
  });
});
