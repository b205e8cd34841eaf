import { expect } from "chai";
import { recoverTypedDataAddress, isAddressEqual, type Hex } from "viem";
import { toCompactSignature, voucherDomain, voucherTypedData, signerOfChannel } from "../../src/protocol/voucher";
import { VerificationEngine, type CheckResult, type EngineOptions, type Ticket } from "../../src/server/engine";
import type { ChannelRecord } from "../../src/protocol/channel";
import {
  ASSET,
  CHAIN_ID,
  CONTRACT,
  CURVE_N,
  OTHER_ADDRESS,
  PAYEE,
  PAYEE_KEY,
  PAYER,
  channelRecord,
  fastVerifier,
  payerChannel,
  signVoucher,
  word,
} from "../helpers/memoryStore";
import { createRandom } from "../helpers/random";

const NOW = 1_750_000_000;
const MARGIN = 3_600;
const PRICE = 1_000n;
const CH = payerChannel();

interface Setup {
  engine: VerificationEngine;
  used: Map<bigint, bigint[]>;
  verifications: () => number;
}

function setup(records: ChannelRecord[] = [channelRecord()], options: Partial<EngineOptions> = {}): Setup {
  const used = new Map<bigint, bigint[]>();
  let verifications = 0;
  const verify = fastVerifier();
  const engine = new VerificationEngine({
    payee: PAYEE,
    tokens: [ASSET],
    withdrawSafetyMarginSec: MARGIN,
    loadUsedAmounts: (id) => used.get(id) ?? [],
    nowSec: () => NOW,
    verifySignature: (id, amount, sig) => {
      verifications++;
      return verify(id, amount, sig);
    },
    ...options,
  });
  engine.restore([], records);
  return { engine, used, verifications: () => verifications };
}

function check(engine: VerificationEngine, amount: bigint, price = PRICE, signature?: Hex, channelId = CH) {
  return engine.check(channelId, amount, signature ?? signVoucher(channelId, amount), price);
}

function accepted(result: CheckResult): Ticket {
  if (result.kind !== "accepted") throw new Error(`expected accepted, got ${JSON.stringify(result, replacer)}`);
  return result.ticket;
}

function rejected(result: CheckResult, reason: string) {
  expect(result.kind, JSON.stringify(result, replacer)).to.equal("rejected");
  if (result.kind !== "rejected") throw new Error("unreachable");
  expect(result.reason).to.equal(reason);
  return result;
}

function replacer(_key: string, value: unknown) {
  return typeof value === "bigint" ? value.toString() : value;
}

function charged(engine: VerificationEngine, channelId = CH): bigint {
  return BigInt(engine.channelView(channelId)!.chargedTotal);
}

describe("VerificationEngine", () => {
  describe("channel rules", () => {
    it("reports a channel it does not know as unknown_channel, and accepts it once applied", () => {
      const { engine } = setup([]);
      expect(check(engine, PRICE).kind).to.equal("unknown_channel");
      expect(engine.channelView(CH)).to.equal(undefined);
      engine.applyChannel(channelRecord());
      const ticket = accepted(check(engine, PRICE));
      expect(ticket.payer).to.equal(PAYER);
      expect(ticket.chargedTotal).to.equal(PRICE);
    });

    it("refuses a channel paying another payee (wrong_payee) and accepts any address case", () => {
      rejected(check(setup([channelRecord({ payee: OTHER_ADDRESS })]).engine, PRICE), "wrong_payee");
      const lower = setup([channelRecord({ payee: PAYEE.toLowerCase() as Hex })]).engine;
      accepted(check(lower, PRICE));
    });

    it("refuses a channel in a token the server does not take (wrong_token)", () => {
      rejected(check(setup([channelRecord({ token: OTHER_ADDRESS })]).engine, PRICE), "wrong_token");
      accepted(check(setup([channelRecord({ token: ASSET.toLowerCase() as Hex })]).engine, PRICE));
    });

    it("refuses a closed channel (channel_closed)", () => {
      rejected(check(setup([channelRecord({ status: "closed" })]).engine, PRICE), "channel_closed");
    });

    it("refuses a withdrawing channel whose exit is inside the safety margin, with the channel view", () => {
      for (const readyAt of [NOW + MARGIN - 1, NOW, NOW - 10, 1]) {
        const result = rejected(
          check(setup([channelRecord({ withdrawReadyAt: readyAt })]).engine, PRICE),
          "channel_withdrawing",
        );
        expect(result.channel?.withdrawReadyAt).to.equal(readyAt);
      }
    });

    it("keeps serving a withdrawing channel whose exit is at least the safety margin away", () => {
      accepted(check(setup([channelRecord({ withdrawReadyAt: NOW + MARGIN })]).engine, PRICE));
      accepted(check(setup([channelRecord({ withdrawReadyAt: NOW + 10 * MARGIN })]).engine, PRICE));
    });

    it("applies channel checks in order: payee, token, closed, withdrawing", () => {
      const all = { payee: OTHER_ADDRESS, token: OTHER_ADDRESS, status: "closed" as const, withdrawReadyAt: NOW };
      rejected(check(setup([channelRecord(all)]).engine, PRICE), "wrong_payee");
      rejected(check(setup([channelRecord({ ...all, payee: PAYEE })]).engine, PRICE), "wrong_token");
      rejected(check(setup([channelRecord({ ...all, payee: PAYEE, token: ASSET })]).engine, PRICE), "channel_closed");
    });

    it("follows watcher updates: a top-up raises what can be spent, a close stops it", () => {
      const { engine } = setup([channelRecord({ deposit: 2_000n })]);
      rejected(check(engine, 3_000n), "amount_exceeds_deposit");
      engine.applyChannel(channelRecord({ deposit: 5_000n }));
      accepted(check(engine, 3_000n));
      expect(charged(engine)).to.equal(PRICE);
      engine.applyChannel(channelRecord({ deposit: 5_000n, status: "closed" }));
      rejected(check(engine, 4_000n), "channel_closed");
    });
  });

  describe("amount rules", () => {
    it("refuses a voucher above the deposit (amount_exceeds_deposit) and accepts one equal to it", () => {
      const { engine } = setup([channelRecord({ deposit: 5_000n })]);
      const result = rejected(check(engine, 5_001n), "amount_exceeds_deposit");
      expect(result.channel?.deposit).to.equal("5000");
      accepted(check(engine, 5_000n));
    });

    it("accepts when charged + price equals max(highest, amount), refuses one unit less", () => {
      const { engine } = setup();
      rejected(check(engine, PRICE - 1n), "insufficient_amount");
      accepted(check(engine, PRICE));
      rejected(check(engine, 2n * PRICE - 1n), "insufficient_amount");
      accepted(check(engine, 2n * PRICE));
      expect(charged(engine)).to.equal(2n * PRICE);
    });

    it("carries the channel view with insufficient_amount so the client can resynchronize", () => {
      const { engine } = setup([channelRecord({ deposit: 50_000n, withdrawReadyAt: NOW + 2 * MARGIN })]);
      accepted(check(engine, 3n * PRICE, 3n * PRICE, signVoucher(CH, 3n * PRICE)));
      const result = rejected(check(engine, 3n * PRICE + 500n), "insufficient_amount");
      // The signature of the highest voucher is never sent: anyone can provoke this 402.
      expect(result.channel).to.not.have.property("highestSignature");
      expect(result.channel).to.deep.equal({
        channelId: `0x${CH.toString(16)}`,
        deposit: "50000",
        chargedTotal: (3n * PRICE).toString(),
        highestAmount: (3n * PRICE).toString(),
        remaining: (50_000n - 3n * PRICE).toString(),
        withdrawReadyAt: NOW + 2 * MARGIN,
      });
      // Resync: a voucher of chargedTotal + price (or anything fresh below the highest) pays.
      accepted(check(engine, BigInt(result.channel!.chargedTotal) + PRICE));
    });

    it("accepts vouchers in any order while the best voucher covers everything charged", () => {
      const { engine } = setup();
      accepted(check(engine, 5n * PRICE));
      for (const k of [2n, 4n, 1n, 3n]) accepted(check(engine, k * PRICE));
      expect(charged(engine)).to.equal(5n * PRICE);
      rejected(check(engine, 5n * PRICE + 1n), "insufficient_amount");
      accepted(check(engine, 6n * PRICE));
      expect(engine.channelView(CH)?.highestAmount).to.equal((6n * PRICE).toString());
    });

    it("checks the amount before the signature: insufficient_amount wins over a bad signature", () => {
      const { engine, verifications } = setup();
      rejected(check(engine, 1n, PRICE, signVoucher(CH, 2n)), "insufficient_amount");
      rejected(check(engine, 10n ** 12n, PRICE, signVoucher(CH, 2n)), "amount_exceeds_deposit");
      expect(verifications()).to.equal(0);
    });

    it("reserves the charge at once so that concurrent checks see it", () => {
      const { engine } = setup();
      const t1 = accepted(check(engine, 2n * PRICE));
      const t2 = accepted(check(engine, PRICE));
      expect([t1.chargedTotal, t2.chargedTotal]).to.deep.equal([PRICE, 2n * PRICE]);
      expect(t2.remaining).to.equal(10_000_000n - 2n * PRICE);
      rejected(check(engine, 3n), "insufficient_amount");
    });
  });

  describe("signature rules", () => {
    it("refuses a voucher signed by another key (invalid_signature) and reserves nothing", () => {
      const { engine } = setup();
      rejected(check(engine, PRICE, PRICE, signVoucher(CH, PRICE, { key: PAYEE_KEY })), "invalid_signature");
      rejected(check(engine, PRICE, PRICE, signVoucher(CH, PRICE + 1n)), "invalid_signature");
      const otherChain = voucherDomain(CHAIN_ID + 1, ASSET);
      rejected(check(engine, PRICE, PRICE, signVoucher(CH, PRICE, { domain: otherChain })), "invalid_signature");
      expect(charged(engine)).to.equal(0n);
      // The amount was not consumed: the correctly signed voucher still pays.
      accepted(check(engine, PRICE));
    });

    it("refuses the high-s twin of a valid signature (high_s_signature)", () => {
      const { engine } = setup();
      rejected(check(engine, PRICE, PRICE, signVoucher(CH, PRICE, { highS: true })), "high_s_signature");
      accepted(check(engine, PRICE));
    });

    it("refuses structurally invalid signatures as malformed_signature", () => {
      const { engine } = setup();
      const good = signVoucher(CH, PRICE);
      const bad: Hex[] = [
        `0x${word(0n)}${good.slice(66)}` as Hex, // r = 0
        `0x${good.slice(2, 66)}${word(0n)}1b` as Hex, // s = 0
        `0x${word(CURVE_N)}${good.slice(66)}` as Hex, // r = n
        `${good.slice(0, 130)}1d` as Hex, // v = 29
        `${good.slice(0, 130)}00`.replace(/^0x../, "0xzz") as Hex, // not hex
      ];
      for (const sig of bad) rejected(check(engine, PRICE, PRICE, sig), "malformed_signature");
      expect(charged(engine)).to.equal(0n);
    });

    it("accepts the 64-byte EIP-2098 form and v in {0, 1}", () => {
      const { engine } = setup();
      accepted(check(engine, PRICE, PRICE, toCompactSignature(signVoucher(CH, PRICE))));
      const sig = signVoucher(CH, 2n * PRICE);
      const v = parseInt(sig.slice(130), 16) - 27;
      accepted(check(engine, 2n * PRICE, PRICE, `${sig.slice(0, 130)}0${v}` as Hex));
    });

    it("agrees with viem's recoverTypedDataAddress on random vouchers", async () => {
      const random = createRandom(7);
      const verify = fastVerifier();
      const domain = voucherDomain(CHAIN_ID, CONTRACT);
      for (let i = 0; i < 40; i++) {
        const channelId = payerChannel(BigInt(random.int(2 ** 24)));
        const amount = BigInt(random.int(2 ** 48));
        const sig = signVoucher(channelId, amount, random.chance(0.5) ? {} : { key: PAYEE_KEY });
        const recovered = await recoverTypedDataAddress({
          ...voucherTypedData(domain, { channelId, cumulativeAmount: amount }),
          signature: sig,
        });
        const expected = isAddressEqual(recovered, signerOfChannel(channelId)) ? "ok" : "invalid_signature";
        expect(verify(channelId, amount, sig)).to.equal(expected);
      }
    });
  });

  describe("retries and reuse", () => {
    it("answers the same voucher again as a retry, without charging or verifying again", () => {
      const { engine, verifications } = setup();
      const sig = signVoucher(CH, PRICE);
      accepted(check(engine, PRICE, PRICE, sig));
      expect(verifications()).to.equal(1);
      expect(check(engine, PRICE, PRICE, sig)).to.deep.equal({ kind: "retry", channelId: CH, amount: PRICE });
      expect(check(engine, PRICE, PRICE, sig.toUpperCase().replace("0X", "0x") as Hex).kind).to.equal("retry");
      expect(verifications()).to.equal(1);
      expect(charged(engine)).to.equal(PRICE);
    });

    it("refuses the same amount with another signature as voucher_reused, without verifying it", () => {
      const { engine, verifications } = setup();
      accepted(check(engine, PRICE));
      const compact = toCompactSignature(signVoucher(CH, PRICE));
      const result = rejected(check(engine, PRICE, PRICE, compact), "voucher_reused");
      expect(result.channel?.chargedTotal).to.equal(PRICE.toString());
      rejected(check(engine, PRICE, PRICE, signVoucher(CH, PRICE, { key: PAYEE_KEY })), "voucher_reused");
      expect(verifications()).to.equal(1);
    });

    it("after a restart, treats a stored amount as a retry for the gate to resolve against the store", () => {
      const { engine, used } = setup();
      used.set(CH, [PRICE, 2n * PRICE]);
      engine.restore(
        [
          {
            channelId: CH,
            chargedTotal: 2n * PRICE,
            highestAmount: 2n * PRICE,
            highestSignature: signVoucher(CH, 2n * PRICE),
            claimedAmount: 0n,
          },
        ],
        [channelRecord()],
      );
      expect(charged(engine)).to.equal(2n * PRICE);
      expect(check(engine, PRICE, PRICE, signVoucher(CH, PRICE, { key: PAYEE_KEY })).kind).to.equal("retry");
      rejected(check(engine, 2n * PRICE + 1n), "insufficient_amount");
      accepted(check(engine, 3n * PRICE));
      expect(charged(engine)).to.equal(3n * PRICE);
    });

    it("answers every amount at or below the on-chain claimed floor only as a retry, and forgets them", () => {
      // An "upto"-style client leaves headroom (highest > charged): without the floor, an old
      // voucher below the highest could be charged again once the engine forgot it.
      const { engine, verifications } = setup();
      for (let k = 1n; k <= 4n; k++) accepted(check(engine, k * 10n * PRICE));
      expect(charged(engine)).to.equal(4n * PRICE);
      engine.applyChannel(channelRecord({ claimedOnChain: 20n * PRICE }));
      const before = verifications();
      // Used and below the floor: a retry for the gate (which refuses it unless the store has it).
      expect(check(engine, 10n * PRICE).kind).to.equal("retry");
      // Never used, but below the floor: nothing more can be claimed with it.
      expect(check(engine, 15n * PRICE).kind).to.equal("retry");
      expect(check(engine, 20n * PRICE, PRICE, signVoucher(CH, 20n * PRICE, { key: PAYEE_KEY })).kind).to.equal(
        "retry",
      );
      expect(verifications()).to.equal(before);
      expect(charged(engine)).to.equal(4n * PRICE);
      // Above the floor the rules are unchanged: used amounts are retries, new ones are charged.
      rejected(check(engine, 30n * PRICE, PRICE, signVoucher(CH, 30n * PRICE, { key: PAYEE_KEY })), "voucher_reused");
      accepted(check(engine, 35n * PRICE));
      expect(charged(engine)).to.equal(5n * PRICE);
      // After a restart, only the amounts above the floor are loaded from the store.
      const asked: bigint[] = [];
      const restarted = setup([channelRecord({ claimedOnChain: 20n * PRICE })], {
        loadUsedAmounts: (_id, above) => {
          asked.push(above);
          return [30n * PRICE, 35n * PRICE, 40n * PRICE].filter((a) => a > above);
        },
      });
      expect(check(restarted.engine, 30n * PRICE).kind).to.equal("retry");
      expect(check(restarted.engine, 15n * PRICE).kind).to.equal("retry");
      expect(asked).to.deep.equal([20n * PRICE]);
    });

    it("keeps charging within the best voucher after a claim at the charged total below it", () => {
      // The settler claims the lowest voucher covering the charge (here exactly 2 prices), not the best (10).
      const { engine } = setup();
      accepted(check(engine, PRICE));
      accepted(check(engine, 10n * PRICE));
      accepted(check(engine, 2n * PRICE));
      expect(charged(engine)).to.equal(3n * PRICE);
      engine.applyChannel(channelRecord({ claimedOnChain: 2n * PRICE }));
      // A voucher between the claim and the best is new: charged against the best's headroom.
      accepted(check(engine, 4n * PRICE));
      expect(charged(engine)).to.equal(4n * PRICE);
      expect(check(engine, 10n * PRICE).kind).to.equal("retry");
      for (let k = 5n; k <= 10n; k++) accepted(check(engine, k * PRICE + 1n));
      expect(charged(engine)).to.equal(10n * PRICE);
      rejected(check(engine, 9n * PRICE + 2n), "insufficient_amount");
      accepted(check(engine, 11n * PRICE + 1n));
    });

    it("checks reuse before the deposit: a used amount above a lowered deposit is still a retry", () => {
      const { engine } = setup([channelRecord({ deposit: 5_000n })]);
      const sig = signVoucher(CH, 5_000n);
      accepted(check(engine, 5_000n, PRICE, sig));
      engine.applyChannel(channelRecord({ deposit: 4_000n }));
      expect(check(engine, 5_000n, PRICE, sig).kind).to.equal("retry");
    });
  });

  describe("release and settleCharge", () => {
    it("release returns the charge and frees the amount; the highest voucher is kept", () => {
      const { engine } = setup();
      const sig = signVoucher(CH, 3n * PRICE);
      const ticket = accepted(check(engine, 3n * PRICE, PRICE, sig));
      engine.release(ticket);
      expect(charged(engine)).to.equal(0n);
      expect(engine.channelView(CH)?.highestAmount).to.equal((3n * PRICE).toString());
      expect([...engine.ledgers()][0].highestSignature).to.equal(sig);
      // Free again: the same voucher is accepted anew (not a retry) and charged once.
      const again = accepted(check(engine, 3n * PRICE, PRICE, sig));
      expect(again.chargedTotal).to.equal(PRICE);
    });

    it("cancel takes a ticket back entirely: charge, amount and highest voucher", () => {
      const ledger = {
        channelId: CH,
        chargedTotal: PRICE,
        highestAmount: PRICE,
        highestSignature: signVoucher(CH, PRICE),
        claimedAmount: 0n,
      };
      const { engine } = setup([], { loadLedger: () => ledger });
      engine.applyChannel(channelRecord());
      const ticket = accepted(check(engine, 2n * PRICE));
      expect(engine.cancel(ticket)).to.equal(true);
      expect(charged(engine)).to.equal(PRICE);
      // Back to the durable best voucher: a claim collects only what was charged.
      expect(engine.channelView(CH)?.highestAmount).to.equal(PRICE.toString());
      expect([...engine.ledgers()][0].highestSignature).to.equal(ledger.highestSignature);
      // A ticket no longer held (already taken back) changes nothing.
      expect(engine.cancel(ticket)).to.equal(false);
      expect(charged(engine)).to.equal(PRICE);
      // The amount is free again and charged once.
      expect(accepted(check(engine, 2n * PRICE)).chargedTotal).to.equal(2n * PRICE);
    });

    it("cancel of a ticket below the highest returns its charge and keeps the highest", () => {
      const { engine } = setup();
      const low = accepted(check(engine, PRICE));
      accepted(check(engine, 2n * PRICE));
      expect(engine.cancel(low)).to.equal(true);
      expect(charged(engine)).to.equal(PRICE);
      expect(engine.channelView(CH)?.highestAmount).to.equal((2n * PRICE).toString());
    });

    it("cancel is refused when lower vouchers were accepted on the strength of the ticket's amount", () => {
      const { engine } = setup();
      const high = accepted(check(engine, 10n * PRICE));
      accepted(check(engine, 1n));
      accepted(check(engine, 2n));
      expect(engine.cancel(high)).to.equal(false);
      expect(charged(engine)).to.equal(3n * PRICE);
      expect(engine.channelView(CH)?.highestAmount).to.equal((10n * PRICE).toString());
    });

    it("release of a ticket on a channel the engine no longer knows is a no-op", () => {
      const { engine } = setup();
      const ticket = accepted(check(engine, PRICE));
      engine.release({ ...ticket, channelId: ticket.channelId + 1n });
      expect(charged(engine)).to.equal(PRICE);
    });

    it("settleCharge lowers the charged total to the final charge", () => {
      const { engine } = setup();
      const ticket = accepted(check(engine, PRICE, PRICE));
      accepted(check(engine, 2n * PRICE, PRICE));
      expect(engine.settleCharge(ticket, 250n)).to.equal(PRICE + 250n);
      expect(charged(engine)).to.equal(PRICE + 250n);
      // The headroom freed by the lower charge is spendable.
      accepted(check(engine, 2n * PRICE + 250n, PRICE));
    });

    it("settleCharge refuses a final charge outside [0, reserved]", () => {
      const { engine } = setup();
      const ticket = accepted(check(engine, PRICE));
      expect(() => engine.settleCharge(ticket, PRICE + 1n)).to.throw(RangeError);
      expect(() => engine.settleCharge(ticket, -1n)).to.throw(RangeError);
      expect(engine.settleCharge(ticket, 0n)).to.equal(0n);
      expect(() => engine.settleCharge({ ...ticket, channelId: 1n }, 0n)).to.throw(Error);
    });
  });

  describe("state", () => {
    it("restores charged and highest from ledgers and lists them", () => {
      const { engine } = setup([]);
      const other = payerChannel(9n);
      engine.restore(
        [{ channelId: CH, chargedTotal: 7n, highestAmount: 9n, highestSignature: "0xaa", claimedAmount: 0n }],
        [channelRecord(), channelRecord({ channelId: other })],
      );
      const ledgers = [...engine.ledgers()];
      expect(ledgers.map((l) => [l.record.channelId, l.charged, l.highest, l.highestSignature])).to.deep.equal([
        [CH, 7n, 9n, "0xaa"],
        [other, 0n, 0n, null],
      ]);
      expect(engine.record(other)?.channelId).to.equal(other);
      expect(engine.record(other + 1n)).to.equal(undefined);
    });

    it("loads the used amounts of a channel from the store once, on first use", () => {
      let loads = 0;
      const { engine } = setup([channelRecord()], {
        loadUsedAmounts: () => {
          loads++;
          return [PRICE];
        },
      });
      expect(loads).to.equal(0);
      expect(check(engine, PRICE).kind).to.equal("retry");
      accepted(check(engine, 2n * PRICE));
      expect(check(engine, 2n * PRICE).kind).to.equal("retry");
      expect(loads).to.equal(1);
    });
  });
});
