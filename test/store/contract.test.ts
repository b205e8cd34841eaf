import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { DuplicateVoucherError, VoucherNotFoundError } from "../../src/store/errors";
import { openPgStore, type PgStore } from "../../src/store/postgres";
import { openSqliteStore } from "../../src/store/sqlite";
import type { AuthorizationStore, ChargeOutcome, PaymentStore, PendingClaim } from "../../src/store/types";
import { requirePg, testSchema, type TestSchema } from "../helpers/pgSchema";
import { channel, sig, voucher } from "../helpers/storeRecords";

/**
 * The store contract, run against both backends: what the server, the watcher and the settler
 * rely on must hold for SQLite and PostgreSQL alike. Then what only a shared store does:
 * charges decided under the channel's row lock by several stores at once, and leases.
 */

const MAX_U256 = (1n << 256n) - 1n;

async function outcome<T>(promise: Promise<T>): Promise<T | Error> {
  try {
    return await promise;
  } catch (error) {
    return error as Error;
  }
}

/** A backend under test: opens a store on one fresh database, again on the same one, and cleans up. */
interface Backend {
  open(): Promise<PaymentStore & AuthorizationStore>;
  cleanup(): Promise<void>;
}

function contract(name: string, setup: (context: Mocha.Context) => Promise<Backend>): void {
  describe(`store contract: ${name}`, function () {
    let backend: Backend;
    const opened: (PaymentStore & AuthorizationStore)[] = [];
    const open = async () => {
      const store = await backend.open();
      opened.push(store);
      return store;
    };

    beforeEach(async function () {
      backend = await setup(this);
    });
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
      await backend?.cleanup();
    });

    it("stores and reads back every record type at uint256 extremes, also after re-opening", async () => {
      let store = await open();
      const v = voucher(MAX_U256, MAX_U256, { charge: MAX_U256, chargedTotal: MAX_U256, receipt: "é😀".repeat(50) });
      await store.recordVoucher(v);
      const ch = channel(MAX_U256);
      store.upsertChannel(ch);
      store.upsertChannel(channel(0n, { status: "closed", withdrawReadyAt: 2_000_000_000, deposit: 0n }));
      store.setCursor("watcher:8453:0xabc", (1n << 63n) + 1n);
      store.markClaimed(MAX_U256, MAX_U256 - 5n);
      const claim: PendingClaim = {
        channelId: MAX_U256,
        amount: MAX_U256,
        txHash: `0x${"cd".repeat(32)}`,
        nonce: 2 ** 31,
        sentAt: 1_700_000_000_999,
      };
      store.addPendingClaim(claim);
      for (let round = 0; round < 2; round++) {
        expect(store.findVoucher(MAX_U256, MAX_U256)).to.deep.equal(v);
        expect(store.loadVoucherAmounts(MAX_U256)).to.deep.equal([MAX_U256]);
        const ledger = {
          channelId: MAX_U256,
          chargedTotal: MAX_U256,
          highestAmount: MAX_U256,
          highestSignature: v.signature,
          claimedAmount: MAX_U256 - 5n,
        };
        expect(store.getLedger(MAX_U256)).to.deep.equal(ledger);
        expect(store.loadLedgers()).to.deep.equal([ledger]);
        expect(store.loadChannels()).to.deep.equal([
          channel(0n, { status: "closed", withdrawReadyAt: 2_000_000_000, deposit: 0n }),
          ch,
        ]);
        expect(store.getChannel(MAX_U256)).to.deep.equal(ch);
        expect(store.getCursor("watcher:8453:0xabc")).to.equal((1n << 63n) + 1n);
        expect(store.loadPendingClaims()).to.deep.equal([claim]);
        await store.close();
        opened.pop();
        store = await open();
      }
      store.removePendingClaims(claim.txHash);
      expect(store.loadPendingClaims()).to.deep.equal([]);
      expect(store.getLedger(1n)).to.equal(undefined);
      expect(store.findVoucher(1n, 1n)).to.equal(undefined);
      expect(store.getChannel(1n)).to.equal(undefined);
      expect(store.getCursor("none")).to.equal(undefined);
    });

    it("group-commits concurrent vouchers: the last total and the highest amount win, all durable", async () => {
      const store = await open();
      const amounts = Array.from({ length: 300 }, (_, i) => BigInt(((i * 7919) % 300) + 1) * 10n);
      await Promise.all(amounts.map((a, i) => store.recordVoucher(voucher(3n, a, { chargedTotal: BigInt(i + 1) }))));
      const ledger = store.getLedger(3n);
      expect(ledger?.chargedTotal).to.equal(300n);
      expect(ledger?.highestAmount).to.equal(3000n);
      expect(store.loadVoucherAmounts(3n)).to.have.length(300);
      expect(store.loadVoucherAmounts(3n, 2990n)).to.deep.equal([3000n]);
    });

    it("re-recording a voucher is a no-op; another signature for its amount fails only that call", async () => {
      const store = await open();
      const v = voucher(4n, 100n);
      await store.recordVoucher(v);
      const [same, other, next] = await Promise.all([
        outcome(store.recordVoucher(v)),
        outcome(store.recordVoucher({ ...v, signature: sig(200) })),
        outcome(store.recordVoucher(voucher(4n, 200n))),
      ]);
      expect(same).to.equal(undefined);
      expect(other).to.be.instanceOf(DuplicateVoucherError);
      expect(next).to.equal(undefined);
      expect(store.findVoucher(4n, 100n)?.signature).to.equal(v.signature);
      expect(store.loadVoucherAmounts(4n)).to.deep.equal([100n, 200n]);
    });

    it("adjusts a recorded charge, in the voucher's own batch too, and rejects only an unknown voucher's", async () => {
      const store = await open();
      await store.recordVoucher(voucher(5n, 50n, { charge: 50n, chargedTotal: 50n }));
      const results = await Promise.all([
        outcome(store.recordVoucher(voucher(5n, 100n, { charge: 50n, chargedTotal: 100n }))),
        outcome(store.adjustCharge(5n, 100n, 20n, 70n, "adjusted")),
        outcome(store.adjustCharge(5n, 999n, 1n, 1n, "nope")),
      ]);
      expect(results[0]).to.equal(undefined);
      expect(results[1]).to.equal(undefined);
      expect(results[2]).to.be.instanceOf(VoucherNotFoundError);
      expect(store.findVoucher(5n, 100n)).to.include({ charge: 20n, chargedTotal: 70n, receipt: "adjusted" });
      expect(store.getLedger(5n)?.chargedTotal).to.equal(70n);
    });

    it("rejects a value that does not fit uint256, failing only that call", async () => {
      const store = await open();
      const [bad, good] = await Promise.all([
        outcome(store.recordVoucher(voucher(6n, MAX_U256 + 1n))),
        outcome(store.recordVoucher(voucher(6n, 1n))),
      ]);
      expect(bad).to.be.instanceOf(RangeError);
      expect(good).to.equal(undefined);
      expect(() => store.markClaimed(-1n, 1n)).to.throw(RangeError);
    });

    it("prunes per channel only the vouchers at or below the floor accepted before the cutoff", async () => {
      const store = await open();
      for (const a of [10n, 20n, 30n]) await store.recordVoucher(voucher(7n, a, { acceptedAt: 1_000 }));
      await store.recordVoucher(voucher(7n, 15n, { acceptedAt: 5_000 }));
      await store.recordVoucher(voucher(8n, 10n, { acceptedAt: 1_000 }));
      const removed = store.pruneVouchers(
        [
          { channelId: 7n, upTo: 20n },
          { channelId: 8n, upTo: 5n },
        ],
        2_000,
      );
      expect(removed).to.deep.equal([2, 0]);
      expect(store.loadVoucherAmounts(7n)).to.deep.equal([15n, 30n]);
      expect(store.loadVoucherAmounts(8n)).to.deep.equal([10n]);
    });

    it("finds a channel's lowest voucher at or above an amount, in numeric order", async () => {
      const store = await open();
      const amounts = [9n, 10n, 100n, 1n << 200n, MAX_U256];
      for (const a of amounts) await store.recordVoucher(voucher(9n, a));
      await store.recordVoucher(voucher(10n, 50n));
      expect(store.findCoveringVoucher(9n, 0n)?.amount).to.equal(9n);
      expect(store.findCoveringVoucher(9n, 10n)).to.deep.equal(store.findVoucher(9n, 10n));
      expect(store.findCoveringVoucher(9n, 11n)?.amount).to.equal(100n);
      expect(store.findCoveringVoucher(9n, 101n)?.amount).to.equal(1n << 200n);
      expect(store.findCoveringVoucher(9n, (1n << 200n) + 1n)?.amount).to.equal(MAX_U256);
      expect(store.findCoveringVoucher(10n, 51n)).to.equal(undefined);
      expect(store.findCoveringVoucher(11n, 0n)).to.equal(undefined);
    });

    it("keeps the claimed amount at its maximum and replaces channel records and cursors", async () => {
      const store = await open();
      store.markClaimed(9n, 50n);
      store.markClaimed(9n, 40n);
      expect(store.getLedger(9n)?.claimedAmount).to.equal(50n);
      store.upsertChannel(channel(9n, { updatedAtBlock: 10n }));
      store.upsertChannel(channel(9n, { updatedAtBlock: 11n, withdrawReadyAt: 123 }));
      expect(store.getChannel(9n)?.withdrawReadyAt).to.equal(123);
      store.setCursor("k", 5n);
      store.setCursor("k", 4n);
      expect(store.getCursor("k")).to.equal(4n);
    });

    it("records an exact authorization once whatever the address casing, completes or releases it, and keeps it across re-opening", async () => {
      let store = await open();
      const token = "0xAbCdEf0000000000000000000000000000000001" as const;
      const payer = "0x00000000000000000000000000000000000000Fe" as const;
      const nonce = `0x${"Ab".repeat(32)}` as const;
      const other = `0x${"01".repeat(32)}` as const;
      expect(
        store.reserveAuthorization({ token, payer, nonce, value: MAX_U256, createdAt: 1_700_000_000_123 }),
      ).to.equal(true);
      const lower = [token.toLowerCase(), payer.toLowerCase(), nonce.toLowerCase()] as const;
      expect(
        store.reserveAuthorization({ token: lower[0] as `0x${string}`, payer, nonce, value: 1n, createdAt: 1 }),
      ).to.equal(false);
      expect(store.findAuthorization(token, payer, nonce)).to.deep.equal({
        token: lower[0],
        payer: lower[1],
        nonce: lower[2],
        value: MAX_U256,
        txHash: null,
        createdAt: 1_700_000_000_123,
      });
      expect(store.findAuthorization(token, payer, other)).to.equal(undefined);

      const tx = `0x${"C".repeat(64)}` as const;
      store.completeAuthorization(token, payer, nonce, tx);
      // A completed authorization stays recorded: releasing it would let its replay be settled.
      store.releaseAuthorization(token, payer, nonce);
      expect(store.findAuthorization(token, payer, nonce)?.txHash).to.equal(tx.toLowerCase());

      expect(store.reserveAuthorization({ token, payer, nonce: other, value: 5n, createdAt: 2 })).to.equal(true);
      store.releaseAuthorization(token, payer, other);
      expect(store.findAuthorization(token, payer, other)).to.equal(undefined);
      expect(store.reserveAuthorization({ token, payer, nonce: other, value: 5n, createdAt: 3 })).to.equal(true);

      await store.close();
      store = await open();
      expect(store.findAuthorization(token, payer, nonce)?.txHash).to.equal(tx.toLowerCase());
      expect(store.findAuthorization(token, payer, other)?.createdAt).to.equal(3);
      expect(store.reserveAuthorization({ token, payer, nonce: other, value: 5n, createdAt: 4 })).to.equal(false);
    });
  });
}

contract("SQLite", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "paychan-contract-"));
  return {
    open: () => Promise.resolve(openSqliteStore({ path: path.join(dir, "store.db") })),
    cleanup: () => Promise.resolve(fs.rmSync(dir, { recursive: true, force: true })),
  };
});

contract("PostgreSQL", async (context) => {
  const schema = testSchema(requirePg(context, "the PostgreSQL store contract"));
  return { open: () => openPgStore({ url: schema.url }), cleanup: () => schema.drop() };
});

describe("PgStore as a store several instances share", function () {
  let schema: TestSchema;
  const stores: PgStore[] = [];
  const open = async () => {
    const store = await openPgStore({ url: schema.url });
    stores.push(store);
    return store;
  };

  beforeEach(function () {
    schema = testSchema(requirePg(this, "the shared PostgreSQL store tests"));
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    await schema?.drop();
  });

  it("decides 64 concurrent charges on one channel from 3 stores without charging twice or beyond the best voucher", async () => {
    const [a, b, c] = [await open(), await open(), await open()];
    const price = 10n;
    // Amounts 10..640 in a scrambled order, plus 16 payments reusing an amount on another store.
    const amounts = Array.from({ length: 64 }, (_, i) => BigInt(((i * 37) % 64) + 1) * price);
    const charge = (store: PgStore, amount: bigint) =>
      store.chargeVoucher({
        channelId: 42n,
        amount,
        signature: sig(Number(amount % 251n)),
        charge: price,
        floor: 0n,
        acceptedAt: Date.now(),
        sign: (total) => `receipt:${amount}:${total}`,
      });
    const stores = [a, b, c];
    const first = amounts.map((amount, i) => charge(stores[i % 3], amount));
    const again = amounts.slice(0, 16).map((amount, i) => charge(stores[(i + 1) % 3], amount));
    const [firsts, agains] = [await Promise.all(first), await Promise.all(again)];
    const all: ChargeOutcome[] = [...firsts, ...agains];

    const accepted = all.filter((o) => o.kind === "accepted");
    const totals = accepted.map((o) => (o.kind === "accepted" ? o.voucher.chargedTotal : 0n));
    expect(new Set(totals).size, "every accepted charge gets its own total").to.equal(accepted.length);
    const ledger = a.getLedger(42n);
    expect(ledger?.chargedTotal).to.equal(price * BigInt(accepted.length));
    expect(ledger?.chargedTotal).to.be.at.most(ledger?.highestAmount ?? 0n);
    // Per amount: accepted at most once, and every repeat that finds it gets the same receipt.
    const amountsAll = [...amounts, ...amounts.slice(0, 16)];
    const byAmount = new Map<bigint, ChargeOutcome[]>();
    all.forEach((o, i) => byAmount.set(amountsAll[i], [...(byAmount.get(amountsAll[i]) ?? []), o]));
    for (const outcomes of byAmount.values()) {
      const winners = outcomes.filter((o) => o.kind === "accepted");
      expect(winners.length).to.be.at.most(1);
      for (const o of outcomes) {
        if (o.kind !== "stored") continue;
        expect(winners).to.have.length(1);
        expect(o.voucher.receipt).to.equal(winners[0].kind === "accepted" ? winners[0].voucher.receipt : "");
      }
    }
    expect(all.filter((o) => o.kind === "stored").length).to.be.above(0);
    expect(a.loadVoucherAmounts(42n)).to.have.length(accepted.length);
    // Out of order, some amounts come before the charged total caught up: refused, never overcharged.
    expect(all.every((o) => o.kind !== "below_floor")).to.equal(true);
    expect(accepted.length).to.be.above(32);
    const commits = stores.reduce((n, s) => n + s.stats().commits, 0);
    const writes = stores.reduce((n, s) => n + s.stats().writes, 0);
    expect(writes).to.equal(80);
    expect(commits, "concurrent writes share commits").to.be.below(writes / 4);
  });

  it("refuses a voucher at or below the floor and decides against the claimed amount too", async () => {
    const store = await open();
    store.markClaimed(43n, 100n);
    const base = { channelId: 43n, signature: sig(1), charge: 10n, acceptedAt: 1, sign: () => "r" };
    expect((await store.chargeVoucher({ ...base, amount: 100n, floor: 0n })).kind).to.equal("below_floor");
    expect((await store.chargeVoucher({ ...base, amount: 150n, floor: 160n })).kind).to.equal("below_floor");
    expect((await store.chargeVoucher({ ...base, amount: 170n, floor: 160n })).kind).to.equal("accepted");
  });

  it("grants a lease to one holder at a time and to another once it expired or was released", async () => {
    const [a, b] = [await open(), await open()];
    expect(await a.acquireLease("duty", "A", 1_000)).to.equal(true);
    expect(await b.acquireLease("duty", "B", 1_000)).to.equal(false);
    expect(await a.acquireLease("duty", "A", 1_000)).to.equal(true);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect(await b.acquireLease("duty", "B", 60_000)).to.equal(true);
    expect(await a.acquireLease("duty", "A", 1_000)).to.equal(false);
    await b.releaseLease("duty", "B");
    expect(await a.acquireLease("duty", "A", 1_000)).to.equal(true);
  });

  it("lets one instance only reserve an exact authorization, and shows every instance its transfer", async () => {
    const [a, b] = [await open(), await open()];
    const key = {
      token: "0x0000000000000000000000000000000000000001",
      payer: "0x0000000000000000000000000000000000000002",
      nonce: `0x${"07".repeat(32)}`,
    } as const;
    expect(a.reserveAuthorization({ ...key, value: 10n, createdAt: 1 })).to.equal(true);
    expect(b.reserveAuthorization({ ...key, value: 10n, createdAt: 2 })).to.equal(false);
    const tx = `0x${"ab".repeat(32)}` as const;
    a.completeAuthorization(key.token, key.payer, key.nonce, tx);
    expect(b.findAuthorization(key.token, key.payer, key.nonce)?.txHash).to.equal(tx);
  });
});
