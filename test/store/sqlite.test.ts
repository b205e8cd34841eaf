import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { expect } from "chai";
import type { Hex } from "viem";
import { MIGRATIONS, SCHEMA_VERSION, migrate, type Migration } from "../../src/store/migrations";
import {
  DuplicateVoucherError,
  SqliteStore,
  StoreSyncError,
  VoucherNotFoundError,
  openSqliteStore,
  type FileSync,
} from "../../src/store/sqlite";
import type { AcceptedVoucher, PendingClaim } from "../../src/store/types";
import { channel, MAX_AMOUNT, MAX_CHANNEL_ID, sig, voucher } from "../helpers/storeRecords";

const REPO = path.resolve(__dirname, "../..");
/** Settles a promise into what it resolved to or the error it rejected with. */
async function outcome(p: Promise<void>): Promise<"ok" | Error> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return err as Error;
  }
}

/** Runs `code` in a fresh Node process that can require TypeScript; resolves with its exit and output. */
function runChild(
  code: string,
  env: Record<string, string>,
  onLine: (line: string, kill: () => void) => void = () => undefined,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-r", "ts-node/register/transpile-only", "-e", code], {
      cwd: REPO,
      env: { ...process.env, TS_NODE_PROJECT: path.join(REPO, "tsconfig.json"), ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) onLine(line, () => child.kill("SIGKILL"));
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (exitCode, signal) => resolve({ code: exitCode, signal, stdout, stderr }));
  });
}

describe("SqliteStore", () => {
  let dir: string;
  let file: string;
  const open: SqliteStore[] = [];

  function openStore(options: Partial<Parameters<typeof openSqliteStore>[0]> = {}): SqliteStore {
    const store = openSqliteStore({ path: file, ...options });
    open.push(store);
    return store;
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "paychan-store-test-"));
    file = path.join(dir, "store.db");
  });

  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe("opening and migrations", () => {
    it("creates the schema in WAL mode: NORMAL plus its own fsync by default, FULL in commit mode, OFF when not durable", async () => {
      const store = openStore();
      expect(store.connectionSettings()).to.deep.equal({
        journalMode: "wal",
        synchronous: 1,
        walAutocheckpoint: 256,
        fsync: "background",
      });
      await store.close();
      const inline = openStore({ fsync: "commit" });
      expect(inline.connectionSettings()).to.deep.equal({
        journalMode: "wal",
        synchronous: 2,
        walAutocheckpoint: 256,
        fsync: "commit",
      });
      await inline.close();
      const fast = openStore({ durable: false, walAutocheckpointPages: 64 });
      expect(fast.connectionSettings()).to.deep.equal({
        journalMode: "wal",
        synchronous: 0,
        walAutocheckpoint: 64,
        fsync: "off",
      });
      await fast.close();
      const db = new Database(file, { readonly: true });
      expect(db.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
      db.close();
    });

    it("re-opening is idempotent and keeps data", async () => {
      const first = openStore();
      await first.recordVoucher(voucher(1n, 10n));
      first.setCursor("k", 5n);
      await first.close();
      for (let i = 0; i < 3; i++) {
        const again = openStore();
        expect(again.findVoucher(1n, 10n)).to.deep.equal(voucher(1n, 10n));
        expect(again.getCursor("k")).to.equal(5n);
        await again.close();
      }
      const db = new Database(file);
      expect(migrate(db)).to.deep.equal([]);
      expect(db.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
      db.close();
    });

    it("upgrades a database created by migration 1 without losing its rows", async () => {
      const db = new Database(file);
      expect(migrate(db, MIGRATIONS.slice(0, 1))).to.deep.equal([1]);
      expect(db.pragma("user_version", { simple: true })).to.equal(1);
      const hex = (v: bigint) => v.toString(16).padStart(64, "0");
      db.prepare("INSERT INTO vouchers VALUES (?, ?, ?, ?, ?, ?, ?)").run(
        hex(MAX_CHANNEL_ID),
        hex(MAX_AMOUNT),
        sig(1),
        hex(3n),
        hex(MAX_AMOUNT),
        "r",
        42,
      );
      db.prepare("INSERT INTO ledgers VALUES (?, ?, ?, ?, ?)").run(
        hex(MAX_CHANNEL_ID),
        hex(MAX_AMOUNT),
        hex(MAX_AMOUNT),
        sig(1),
        hex(0n),
      );
      db.close();

      const store = openStore();
      expect(store.findVoucher(MAX_CHANNEL_ID, MAX_AMOUNT)).to.deep.equal({
        channelId: MAX_CHANNEL_ID,
        amount: MAX_AMOUNT,
        signature: sig(1),
        charge: 3n,
        chargedTotal: MAX_AMOUNT,
        receipt: "r",
        acceptedAt: 42,
      });
      expect(store.getLedger(MAX_CHANNEL_ID)?.highestAmount).to.equal(MAX_AMOUNT);
      // pending_claims arrives with migration 2.
      store.addPendingClaim({ channelId: 1n, amount: 2n, txHash: sig(9).slice(0, 66) as Hex, nonce: 1, sentAt: 3 });
      expect(store.loadPendingClaims()).to.have.length(1);
      await store.close();
      const check = new Database(file, { readonly: true });
      expect(check.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
      check.close();
    });

    it("moves the vouchers of a version 2 database into the rowid table with its unique index (migration 3)", async () => {
      const db = new Database(file);
      expect(migrate(db, MIGRATIONS.slice(0, 2))).to.deep.equal([1, 2]);
      const hex = (v: bigint) => v.toString(16).padStart(64, "0");
      const insert = db.prepare("INSERT INTO vouchers VALUES (?, ?, ?, ?, ?, ?, ?)");
      const rows: AcceptedVoucher[] = [];
      for (const [c, a] of [
        [MAX_CHANNEL_ID, MAX_AMOUNT],
        [MAX_CHANNEL_ID, 0x100n],
        [5n, 0x20n],
        [5n, 0x3n],
      ] as const) {
        const v = voucher(c, a, { receipt: `{"request":"0x${a}"}`, acceptedAt: Number(a % 1000n) });
        rows.push(v);
        insert.run(hex(c), hex(a), v.signature, hex(v.charge), hex(v.chargedTotal), v.receipt, v.acceptedAt);
      }
      db.prepare("INSERT INTO ledgers VALUES (?, ?, ?, ?, ?)").run(hex(5n), hex(0x23n), hex(0x20n), sig(3), hex(0n));
      db.close();

      const store = openStore();
      for (const v of rows) expect(store.findVoucher(v.channelId, v.amount)).to.deep.equal(v);
      expect(store.loadVoucherAmounts(MAX_CHANNEL_ID)).to.deep.equal([0x100n, MAX_AMOUNT]);
      expect(store.loadVoucherAmounts(5n)).to.deep.equal([0x3n, 0x20n]);
      expect(store.getLedger(5n)?.highestAmount).to.equal(0x20n);
      // (channel, amount) is still a voucher's identity: the same voucher again is a no-op, another
      // signature for it is refused, and a new amount is stored next to the migrated rows.
      expect(await outcome(store.recordVoucher(rows[2]))).to.equal("ok");
      expect(await outcome(store.recordVoucher({ ...rows[2], signature: sig(200) }))).to.be.instanceOf(
        DuplicateVoucherError,
      );
      await store.recordVoucher(voucher(5n, 0x40n));
      expect(store.loadVoucherAmounts(5n)).to.deep.equal([0x3n, 0x20n, 0x40n]);
      await store.close();

      const check = new Database(file, { readonly: true });
      expect(check.pragma("user_version", { simple: true })).to.equal(SCHEMA_VERSION);
      expect(check.prepare("SELECT count(*) AS n FROM vouchers").get()).to.deep.equal({ n: 5 });
      const table = check.prepare("SELECT sql FROM sqlite_master WHERE name = 'vouchers'").pluck().get() as string;
      expect(table).to.match(/id\s+INTEGER PRIMARY KEY/);
      expect(table).not.to.match(/WITHOUT ROWID/);
      const plan = check
        .prepare("EXPLAIN QUERY PLAN SELECT receipt FROM vouchers WHERE channel_id = ? AND amount = ?")
        .all(hex(5n), hex(3n)) as { detail: string }[];
      expect(plan.map((p) => p.detail).join(" ")).to.contain("vouchers_channel_amount");
      check.close();
    });

    it("refuses a database written by a newer schema", () => {
      const db = new Database(file);
      db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      db.close();
      expect(() => openStore()).to.throw(/newer than this code supports/);
    });

    it("applies migrations all or nothing", () => {
      const db = new Database(file);
      const failing: Migration[] = [
        { version: 1, name: "a", up: (d) => d.exec("CREATE TABLE a (x)") },
        { version: 2, name: "b", up: (d) => d.exec("CREATE TABLE b (x); THIS IS NOT SQL") },
      ];
      expect(() => migrate(db, failing)).to.throw();
      expect(db.pragma("user_version", { simple: true })).to.equal(0);
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name IN ('a', 'b')").get()).to.deep.equal({
        n: 0,
      });
      expect(() => migrate(db, [failing[1]])).to.throw(/expected 1/);
      db.close();
    });
  });

  describe("round trips with extreme values", () => {
    it("stores and reads back every record type, also after re-opening", async () => {
      let store = openStore();
      const v = voucher(MAX_CHANNEL_ID, MAX_AMOUNT, {
        charge: MAX_AMOUNT,
        chargedTotal: MAX_AMOUNT,
        signature: `0x${"Ab".repeat(65)}`, // case is kept as given
        receipt: "eyJ\u00e9\u{1F600}".repeat(100),
      });
      await store.recordVoucher(v);
      const ch = channel(MAX_CHANNEL_ID);
      store.upsertChannel(ch);
      store.upsertChannel(channel(0n, { status: "closed", withdrawReadyAt: 2_000_000_000, deposit: 0n }));
      store.setCursor("watcher:8453:0xabc", (1n << 63n) + 1n);
      store.markClaimed(MAX_CHANNEL_ID, MAX_AMOUNT - 5n);
      const claim: PendingClaim = {
        channelId: MAX_CHANNEL_ID,
        amount: MAX_AMOUNT,
        txHash: `0x${"cd".repeat(32)}`,
        nonce: 2 ** 31,
        sentAt: 1_700_000_000_999,
      };
      store.addPendingClaim(claim);

      for (let round = 0; round < 2; round++) {
        expect(store.findVoucher(MAX_CHANNEL_ID, MAX_AMOUNT)).to.deep.equal(v);
        expect(store.loadVoucherAmounts(MAX_CHANNEL_ID)).to.deep.equal([MAX_AMOUNT]);
        const ledger = {
          channelId: MAX_CHANNEL_ID,
          chargedTotal: MAX_AMOUNT,
          highestAmount: MAX_AMOUNT,
          highestSignature: v.signature,
          claimedAmount: MAX_AMOUNT - 5n,
        };
        expect(store.getLedger(MAX_CHANNEL_ID)).to.deep.equal(ledger);
        expect(store.loadLedgers()).to.deep.equal([ledger]);
        expect(store.getChannel(MAX_CHANNEL_ID)).to.deep.equal(ch);
        expect(store.loadChannels()).to.deep.equal([
          channel(0n, { status: "closed", withdrawReadyAt: 2_000_000_000, deposit: 0n }),
          ch,
        ]);
        expect(store.getCursor("watcher:8453:0xabc")).to.equal((1n << 63n) + 1n);
        expect(store.loadPendingClaims()).to.deep.equal([claim]);
        await store.close();
        store = openStore();
      }
    });

    it("returns undefined or empty for unknown keys", () => {
      const store = openStore();
      expect(store.getLedger(1n)).to.equal(undefined);
      expect(store.findVoucher(1n, 1n)).to.equal(undefined);
      expect(store.loadVoucherAmounts(1n)).to.deep.equal([]);
      expect(store.getChannel(1n)).to.equal(undefined);
      expect(store.getCursor("none")).to.equal(undefined);
      expect(store.loadLedgers()).to.deep.equal([]);
      expect(store.loadChannels()).to.deep.equal([]);
      expect(store.loadPendingClaims()).to.deep.equal([]);
    });

    it("orders amounts numerically, not as unpadded text", async () => {
      const store = openStore();
      const amounts = [9n, 16n, 1n << 64n, MAX_AMOUNT, 255n, 10n];
      await Promise.all(amounts.map((a) => store.recordVoucher(voucher(5n, a))));
      expect(store.loadVoucherAmounts(5n)).to.deep.equal([...amounts].sort((a, b) => (a < b ? -1 : 1)));
      expect(store.getLedger(5n)?.highestAmount).to.equal(MAX_AMOUNT);

      await store.recordVoucher(voucher(6n, 16n));
      await store.recordVoucher(voucher(6n, 9n)); // "9" > "10" as unpadded text
      expect(store.getLedger(6n)).to.include({ highestAmount: 16n, highestSignature: sig(16) });
    });

    it("updates channels, cursors and claimed amounts in place", () => {
      const store = openStore();
      store.upsertChannel(channel(3n));
      store.upsertChannel(channel(3n, { status: "closed", claimedOnChain: 9n, updatedAtBlock: 99n }));
      expect(store.loadChannels()).to.deep.equal([
        channel(3n, { status: "closed", claimedOnChain: 9n, updatedAtBlock: 99n }),
      ]);
      store.setCursor("k", 10n);
      store.setCursor("k", 11n);
      expect(store.getCursor("k")).to.equal(11n);

      store.markClaimed(3n, 50n);
      store.markClaimed(3n, 40n); // a late, lower confirmation does not move it back
      expect(store.getLedger(3n)).to.deep.equal({
        channelId: 3n,
        chargedTotal: 0n,
        highestAmount: 0n,
        highestSignature: null,
        claimedAmount: 50n,
      });
    });

    it("adds and removes pending claims by transaction", () => {
      const store = openStore();
      const tx1: Hex = `0x${"01".repeat(32)}`;
      const tx2: Hex = `0x${"02".repeat(32)}`;
      store.addPendingClaim({ channelId: 1n, amount: 10n, txHash: tx1, nonce: 1, sentAt: 100 });
      store.addPendingClaim({ channelId: 2n, amount: 20n, txHash: tx1, nonce: 1, sentAt: 100 });
      store.addPendingClaim({ channelId: 1n, amount: 15n, txHash: tx2, nonce: 2, sentAt: 200 });
      expect(store.loadPendingClaims().map((c) => [c.txHash, c.channelId])).to.deep.equal([
        [tx1, 1n],
        [tx1, 2n],
        [tx2, 1n],
      ]);
      store.removePendingClaims(tx1);
      expect(store.loadPendingClaims()).to.deep.equal([
        { channelId: 1n, amount: 15n, txHash: tx2, nonce: 2, sentAt: 200 },
      ]);
    });

    it("rejects values that do not fit, failing only that call", async () => {
      const store = openStore();
      const bad = [
        store.recordVoucher(voucher(-1n, 1n)),
        store.recordVoucher(voucher(1n, 1n << 256n)),
        store.adjustCharge(1n, 1n, -3n, 0n, "r"),
      ];
      const good = store.recordVoucher(voucher(1n, 2n));
      for (const p of bad) expect(await outcome(p)).to.be.instanceOf(RangeError);
      await good;
      expect(store.loadVoucherAmounts(1n)).to.deep.equal([2n]);
      expect(() => store.setCursor("k", -1n)).to.throw(RangeError);
    });
  });

  describe("pruning", () => {
    it("deletes per channel only the vouchers at or below the floor accepted before the cutoff", async () => {
      const store = openStore();
      const [a, b] = [5n, 1n << 183n];
      for (const amount of [1n, 2n, 3n, 4n, 255n, 256n]) {
        await store.recordVoucher(voucher(a, amount, { acceptedAt: 1_000 + Number(amount) }));
        await store.recordVoucher(voucher(b, amount, { acceptedAt: 1_000 + Number(amount) }));
      }
      // Channel a up to 256 (numerically, not as text: 255 < 256), but only what is older than
      // 1,004; channel b up to 3, everything old enough; an unknown channel deletes nothing.
      expect(
        store.pruneVouchers(
          [
            { channelId: a, upTo: 256n },
            { channelId: b, upTo: 3n },
            { channelId: 9n, upTo: 1_000n },
          ],
          1_004,
        ),
      ).to.deep.equal([3, 3, 0]);
      expect(store.loadVoucherAmounts(a)).to.deep.equal([4n, 255n, 256n]);
      expect(store.loadVoucherAmounts(b)).to.deep.equal([4n, 255n, 256n]);
      expect(store.findVoucher(a, 3n)).to.equal(undefined);
      expect(store.findVoucher(a, 4n)?.receipt).to.equal(`receipt:${a}:4`);
      expect(store.pruneVouchers([{ channelId: a, upTo: 256n }], 2_000)).to.deep.equal([3]);
      expect(store.loadVoucherAmounts(a)).to.deep.equal([]);
      await store.close();
    });

    it("loads only the amounts above a floor when asked", async () => {
      const store = openStore();
      for (const amount of [0n, 1n, 16n, 255n, 4096n]) await store.recordVoucher(voucher(7n, amount));
      expect(store.loadVoucherAmounts(7n)).to.deep.equal([0n, 1n, 16n, 255n, 4096n]);
      expect(store.loadVoucherAmounts(7n, 0n)).to.deep.equal([1n, 16n, 255n, 4096n]);
      expect(store.loadVoucherAmounts(7n, 16n)).to.deep.equal([255n, 4096n]);
      expect(store.loadVoucherAmounts(7n, 4096n)).to.deep.equal([]);
      await store.close();
    });
  });

  describe("group commit", () => {
    it("commits 1,000 concurrent recordVoucher calls in few transactions, all durable after re-open", async () => {
      let store = openStore();
      const calls: Promise<void>[] = [];
      for (let i = 1; i <= 1000; i++) calls.push(store.recordVoucher(voucher(BigInt(i % 10), BigInt(i))));
      const settled = await Promise.allSettled(calls);
      expect(settled.filter((s) => s.status === "rejected")).to.deep.equal([]);
      // Default maxBatchSize is 512: two transactions, not 1,000, and one WAL fsync each at most.
      // (When each batch is folded depends on when its fsync returns: the log's own test covers it.)
      expect(store.stats()).to.include({ batches: 2, syncs: 2, writes: 1000, maxBatchSize: 512 });
      await store.close();

      store = openStore();
      let total = 0;
      for (let c = 0n; c < 10n; c++) {
        const amounts = store.loadVoucherAmounts(c);
        total += amounts.length;
        const expected = Array.from({ length: 100 }, (_, k) => BigInt(k * 10) + (c === 0n ? 10n : c));
        expect(amounts).to.deep.equal(expected);
        const highest = expected[expected.length - 1];
        expect(store.getLedger(c)).to.deep.equal({
          channelId: c,
          chargedTotal: highest, // the last call on the channel carried the highest total
          highestAmount: highest,
          highestSignature: sig(Number(highest % 251n)),
          claimedAmount: 0n,
        });
      }
      expect(total).to.equal(1000);
    });

    it("flushes on the next turn, or at once when the queue reaches maxBatchSize", async () => {
      const store = openStore({ maxBatchSize: 3 });
      const first = [1n, 2n, 3n].map((a) => store.recordVoucher(voucher(1n, a)));
      // The third call filled the queue and committed synchronously.
      expect(store.loadVoucherAmounts(1n)).to.deep.equal([1n, 2n, 3n]);
      const fourth = store.recordVoucher(voucher(1n, 4n));
      expect(store.loadVoucherAmounts(1n)).to.have.length(3);
      await Promise.all([...first, fourth]);
      // The reads folded the log: the first three vouchers before the fourth was committed.
      expect(store.stats()).to.deep.equal({ batches: 2, syncs: 2, writes: 4, maxBatchSize: 3, folds: 1, folded: 3 });
    });

    it("logs each group commit and folds the log into vouchers and ledgers at foldRows, after foldDelayMs and before reads", async () => {
      const store = openStore({ foldRows: 4, foldDelayMs: 50 });
      const raw = new Database(file, { readonly: true });
      const count = (table: string) => raw.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
      try {
        await Promise.all([1n, 2n, 3n].map((a) => store.recordVoucher(voucher(1n, a))));
        // Durable in the log, not yet in vouchers; the store answers a retry's lookup from memory.
        expect([count("voucher_log"), count("vouchers")]).to.deep.equal([3, 0]);
        expect(store.findVoucher(1n, 2n)).to.deep.equal(voucher(1n, 2n));
        expect(await outcome(store.recordVoucher({ ...voucher(1n, 2n), signature: sig(99) }))).to.be.instanceOf(
          DuplicateVoucherError,
        );
        await new Promise((resolve) => setTimeout(resolve, 120));
        expect([count("voucher_log"), count("vouchers")]).to.deep.equal([0, 3]);
        expect(store.stats()).to.include({ folds: 1, folded: 3 });

        // Four logged writes fold at the next turn, an adjustment of a logged voucher included.
        await Promise.all([
          ...[4n, 5n, 6n].map((a) => store.recordVoucher(voucher(2n, a))),
          store.adjustCharge(2n, 5n, 0n, 4n, "adjusted"),
        ]);
        await new Promise((resolve) => setImmediate(resolve));
        expect([count("voucher_log"), count("vouchers")]).to.deep.equal([0, 6]);
        expect(store.findVoucher(2n, 5n)).to.include({ charge: 0n, chargedTotal: 4n, receipt: "adjusted" });

        // A read folds first: the ledger is there at once.
        await store.recordVoucher(voucher(3n, 7n));
        expect(count("voucher_log")).to.equal(1);
        expect(store.getLedger(3n)).to.include({ highestAmount: 7n, chargedTotal: 7n });
        expect(count("voucher_log")).to.equal(0);
      } finally {
        raw.close();
      }
    });

    it("folds the whole log, another connection's writes and charge adjustments included, in order", async () => {
      const writer = openStore({ foldRows: 1e9, foldDelayMs: 60_000 });
      const other = openStore({ foldRows: 1e9, foldDelayMs: 60_000 });
      await Promise.all([writer.recordVoucher(voucher(1n, 1n)), writer.recordVoucher(voucher(1n, 2n))]);
      await writer.adjustCharge(1n, 2n, 0n, 1n, "adjusted");
      // Another connection sees them once folded: here by its own read, having logged a write.
      expect(other.findVoucher(1n, 2n)).to.equal(undefined);
      await other.recordVoucher(voucher(2n, 1n));
      expect(other.getLedger(1n)).to.include({ chargedTotal: 1n, highestAmount: 2n });
      expect(other.getLedger(1n)?.highestSignature).to.equal(voucher(1n, 2n).signature);
      expect(other.findVoucher(1n, 2n)).to.include({ charge: 0n, chargedTotal: 1n, receipt: "adjusted" });
      expect(other.getLedger(2n)).to.include({ chargedTotal: 1n, highestAmount: 1n });
    });

    it("waits maxBatchDelayMs for more writes when asked to", async () => {
      const store = openStore({ maxBatchDelayMs: 20 });
      const a = store.recordVoucher(voucher(1n, 1n));
      await new Promise((r) => setImmediate(r));
      expect(store.findVoucher(1n, 1n)).to.equal(undefined);
      const b = store.recordVoucher(voucher(1n, 2n));
      await Promise.all([a, b]);
      expect(store.stats().batches).to.equal(1);
    });

    it("sets the ledger total from the last call and the highest voucher from the max", async () => {
      const store = openStore();
      await Promise.all([
        store.recordVoucher(voucher(1n, 100n, { chargedTotal: 10n })),
        store.recordVoucher(voucher(1n, 300n, { chargedTotal: 30n })),
        store.recordVoucher(voucher(1n, 200n, { chargedTotal: 20n })),
      ]);
      expect(store.getLedger(1n)).to.deep.equal({
        channelId: 1n,
        chargedTotal: 20n,
        highestAmount: 300n,
        highestSignature: sig(300 % 251),
        claimedAmount: 0n,
      });

      // A later batch with a lower amount keeps the stored highest voucher.
      await store.recordVoucher(voucher(1n, 150n, { chargedTotal: 25n }));
      expect(store.getLedger(1n)).to.include({ chargedTotal: 25n, highestAmount: 300n });

      // Usage-based route charged less than its maximum: charge and total go down.
      await store.adjustCharge(1n, 300n, 2n, 18n, "adjusted receipt");
      expect(store.getLedger(1n)).to.include({ chargedTotal: 18n, highestAmount: 300n, highestSignature: sig(49) });
      expect(store.findVoucher(1n, 300n)).to.include({ charge: 2n, chargedTotal: 18n, receipt: "adjusted receipt" });
      expect(store.findVoucher(1n, 300n)?.signature).to.equal(sig(49));
    });

    it("applies an adjustCharge queued in the same batch as its voucher", async () => {
      const store = openStore();
      await Promise.all([
        store.recordVoucher(voucher(2n, 50n, { charge: 50n, chargedTotal: 50n })),
        store.adjustCharge(2n, 50n, 20n, 20n, "final"),
      ]);
      expect(store.stats().batches).to.equal(1);
      expect(store.findVoucher(2n, 50n)).to.include({ charge: 20n, chargedTotal: 20n, receipt: "final" });
      expect(store.getLedger(2n)).to.include({ chargedTotal: 20n, highestAmount: 50n });
    });

    it("rejects only the adjustCharge of an unknown voucher", async () => {
      const store = openStore();
      const [missing, ok] = await Promise.all([
        outcome(store.adjustCharge(9n, 1n, 1n, 1n, "r")),
        outcome(store.recordVoucher(voucher(9n, 2n))),
      ]);
      expect(missing).to.be.instanceOf(VoucherNotFoundError);
      expect(ok).to.equal("ok");
      expect(store.getLedger(9n)).to.include({ chargedTotal: 2n, highestAmount: 2n });
    });

    it("treats a re-recorded voucher as a no-op and a conflicting one as an error of that call only", async () => {
      const store = openStore();
      const original = voucher(4n, 40n, { chargedTotal: 40n, receipt: "first" });
      const results = await Promise.all([
        outcome(store.recordVoucher(original)),
        outcome(store.recordVoucher({ ...original, chargedTotal: 99n, receipt: "retry" })), // same signature
        outcome(store.recordVoucher({ ...original, signature: sig(200) })),
        outcome(store.recordVoucher(voucher(4n, 41n, { chargedTotal: 41n }))),
      ]);
      expect(results.slice(0, 2)).to.deep.equal(["ok", "ok"]);
      expect(results[2]).to.be.instanceOf(DuplicateVoucherError);
      expect(results[3]).to.equal("ok");
      // The first write won; the retry did not touch the voucher or the ledger.
      expect(store.findVoucher(4n, 40n)).to.deep.equal(original);
      expect(store.getLedger(4n)).to.include({ chargedTotal: 41n, highestAmount: 41n });

      // Across batches too, and whatever the hex case of the same signature.
      expect(await outcome(store.recordVoucher(original))).to.equal("ok");
      expect(
        await outcome(store.recordVoucher({ ...original, signature: original.signature.toUpperCase() as Hex })),
      ).to.equal("ok");
      expect(await outcome(store.recordVoucher({ ...original, signature: sig(201) }))).to.be.instanceOf(
        DuplicateVoucherError,
      );
      expect(store.getLedger(4n)).to.include({ chargedTotal: 41n });
    });

    it("rejects every call of a batch whose transaction fails, and recovers", async () => {
      const store = openStore({ busyTimeoutMs: 20 });
      await store.recordVoucher(voucher(1n, 1n));
      const locker = new Database(file);
      locker.exec("BEGIN IMMEDIATE"); // holds the write lock
      const results = await Promise.all([1n, 2n, 3n].map((c) => outcome(store.recordVoucher(voucher(c, 10n)))));
      for (const r of results) expect(r).to.be.instanceOf(Error).with.property("code", "SQLITE_BUSY");
      locker.exec("ROLLBACK");
      locker.close();
      for (const c of [1n, 2n, 3n]) expect(store.findVoucher(c, 10n)).to.equal(undefined);
      expect(store.getLedger(1n)?.highestAmount).to.equal(1n);

      await store.recordVoucher(voucher(2n, 10n));
      expect(store.findVoucher(2n, 10n)).to.deep.equal(voucher(2n, 10n));
    });

    it("shows committed state only to reads", async () => {
      const store = openStore();
      const pending = store.recordVoucher(voucher(1n, 1n));
      expect(store.getLedger(1n)).to.equal(undefined);
      expect(store.findVoucher(1n, 1n)).to.equal(undefined);
      await pending;
      expect(store.getLedger(1n)).to.not.equal(undefined);
      expect(store.findVoucher(1n, 1n)).to.deep.equal(voucher(1n, 1n));
    });

    it("close() commits queued writes first and later writes are refused", async () => {
      const store = openStore({ maxBatchDelayMs: 10_000 });
      const queued = [1n, 2n, 3n].map((a) => store.recordVoucher(voucher(1n, a)));
      await store.close();
      await Promise.all(queued);
      await store.close(); // idempotent
      expect(await outcome(store.recordVoucher(voucher(1n, 4n))))
        .to.be.instanceOf(Error)
        .with.property("message")
        .match(/closed/);
      const again = openStore();
      expect(again.loadVoucherAmounts(1n)).to.deep.equal([1n, 2n, 3n]);
    });
  });

  describe("fsync off the event loop", () => {
    /** A FileSync whose asynchronous fdatasyncs wait until the test lets them return. */
    function heldSync(): FileSync & {
      calls: number[];
      syncCalls: number[];
      release(error?: NodeJS.ErrnoException): void;
    } {
      const waiting: ((error: NodeJS.ErrnoException | null) => void)[] = [];
      const fake = {
        calls: [] as number[],
        syncCalls: [] as number[],
        fdatasync(fd: number, callback: (error: NodeJS.ErrnoException | null) => void) {
          fake.calls.push(fd);
          waiting.push((error) => fs.fdatasync(fd, (real) => callback(error ?? real)));
        },
        fdatasyncSync(fd: number) {
          fake.syncCalls.push(fd);
          fs.fdatasyncSync(fd);
        },
        release(error?: NodeJS.ErrnoException) {
          const next = waiting.shift();
          if (!next) throw new Error("no fdatasync is waiting");
          next(error ?? null);
        },
      };
      return fake;
    }
    const turns = async (n: number) => {
      for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
    };
    /** Waits (the real fdatasync behind a released one takes a moment) until `condition` holds. */
    const until = async (condition: () => boolean) => {
      const deadline = Date.now() + 5_000;
      while (!condition()) {
        if (Date.now() > deadline) throw new Error("timed out");
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };

    it("acknowledges a commit only once an fdatasync of the WAL file has returned", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      let acknowledged = false;
      const write = store.recordVoucher(voucher(1n, 10n)).then(() => (acknowledged = true));
      await turns(5);
      // Committed (readable) but not acknowledged: the fsync has not returned.
      expect(store.findVoucher(1n, 10n)).to.include({ amount: 10n });
      expect(acknowledged).to.equal(false);
      expect(sync.calls).to.have.length(1);
      expect(fs.fstatSync(sync.calls[0]).ino).to.equal(fs.statSync(`${file}-wal`).ino);
      sync.release();
      await write;
      expect(acknowledged).to.equal(true);
    });

    it("reports each fsync's duration, held ones included, to onSync", async () => {
      const sync = heldSync();
      const durations: number[] = [];
      const store = openStore({ syncFile: sync, onSync: (seconds) => durations.push(seconds) });
      const write = store.recordVoucher(voucher(1n, 10n));
      await turns(5);
      expect(durations).to.deep.equal([]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      sync.release();
      await write;
      expect(durations).to.have.length(1);
      expect(durations[0]).to.be.at.least(0.019).and.below(5);
      const failed = store.recordVoucher(voucher(1n, 11n)).then(
        () => "stored",
        () => "failed",
      );
      await until(() => sync.calls.length === 2);
      expect(durations).to.have.length(1); // the second fsync is still held
      sync.release(Object.assign(new Error("EIO"), { code: "EIO" }));
      expect(await failed).to.equal("failed");
      expect(durations).to.have.length(2);
    });

    it("commits the writes that arrive during an fsync together when it returns, then fsyncs them", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      const done: number[] = [];
      const first = store.recordVoucher(voucher(1n, 1n)).then(() => done.push(1));
      await turns(3);
      const later = [2n, 3n, 4n].map((a) => store.recordVoucher(voucher(1n, a)).then(() => done.push(Number(a))));
      await turns(5);
      // Queued, not committed: a commit now would have to wait for the next fsync anyway.
      expect(store.stats()).to.include({ batches: 1, syncs: 1 });
      expect(store.findVoucher(1n, 2n)).to.equal(undefined);
      sync.release();
      await first;
      await until(() => sync.calls.length === 2);
      // One commit for the three, and an fsync of its own: the first one did not cover them.
      expect(store.stats()).to.include({ batches: 2, syncs: 2 });
      expect(store.findVoucher(1n, 4n)).to.include({ amount: 4n });
      expect(done).to.deep.equal([1]);
      sync.release();
      await Promise.all(later);
      expect(done).to.deep.equal([1, 2, 3, 4]);
    });

    it("on a failed fsync also rejects the writes queued behind it", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      const first = outcome(store.recordVoucher(voucher(1n, 1n)));
      await turns(3);
      const queued = outcome(store.recordVoucher(voucher(1n, 2n)));
      await turns(3);
      sync.release(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" }));
      expect(await first).to.be.instanceOf(StoreSyncError);
      expect(await queued).to.be.instanceOf(StoreSyncError);
      await store.close();
    });

    it("on a failed fsync rejects the writes waiting for it and refuses every later write", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      expect(store.failure()).to.equal(undefined);
      const waiting = store.recordVoucher(voucher(1n, 1n));
      await turns(3);
      const eio = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO" });
      sync.release(eio);
      const error = await waiting.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(StoreSyncError);
      expect((error as StoreSyncError).cause).to.equal(eio);
      expect(await outcome(store.recordVoucher(voucher(1n, 2n)))).to.be.instanceOf(StoreSyncError);
      expect(store.failure()).to.equal(error);
      expect(() => store.upsertChannel(channel(1n))).to.throw(StoreSyncError);
      await store.close();
    });

    it("fsyncs the writes off the request path before they return", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      store.upsertChannel(channel(1n));
      store.setCursor("watcher", 5n);
      store.markClaimed(1n, 3n);
      store.addPendingClaim({ txHash: `0x${"11".repeat(32)}`, channelId: 1n, amount: 3n, nonce: 1, sentAt: 1 });
      store.removePendingClaims(`0x${"11".repeat(32)}`);
      store.pruneVouchers([{ channelId: 1n, upTo: 3n }], Date.now());
      expect(sync.syncCalls).to.have.length(6);
      expect(sync.calls).to.have.length(0);
    });

    it("close() waits for the running and the pending fsync", async () => {
      const sync = heldSync();
      const store = openStore({ syncFile: sync });
      const writes = [store.recordVoucher(voucher(1n, 1n))];
      await turns(3);
      writes.push(store.recordVoucher(voucher(1n, 2n)));
      let closed = false;
      const closing = store.close().then(() => (closed = true));
      await turns(3);
      expect(closed).to.equal(false);
      sync.release();
      await until(() => sync.calls.length === 2);
      await turns(3);
      expect(closed).to.equal(false);
      sync.release();
      await closing;
      await Promise.all(writes);
      const reopened = openStore();
      expect(reopened.loadVoucherAmounts(1n)).to.deep.equal([1n, 2n]);
    });

    it("in commit mode lets SQLite fsync inside COMMIT and runs no fsync of its own", async () => {
      const sync = heldSync();
      const store = openStore({ fsync: "commit", syncFile: sync });
      await store.recordVoucher(voucher(1n, 1n));
      store.upsertChannel(channel(1n));
      expect(sync.calls).to.have.length(0);
      expect(sync.syncCalls).to.have.length(0);
      expect(store.stats()).to.include({ syncs: 0 });
    });
  });

  describe("crash safety", function () {
    // Each case starts a Node process that compiles the store with ts-node.
    this.timeout(60_000);

    it("keeps every voucher a process acknowledged before it was SIGKILLed", async () => {
      const n = 2000;
      const result = await runChild(
        `
        const { openSqliteStore } = require("./src/store/sqlite");
        // Nothing is folded before the kill: opening the file again folds the whole log.
        const store = openSqliteStore({ path: process.env.DB, foldRows: 1e9, foldDelayMs: 60000 });
        const n = Number(process.env.N);
        const writes = [];
        for (let i = 1; i <= n; i++) {
          writes.push(store.recordVoucher({
            channelId: BigInt(i % 7), amount: BigInt(i), signature: "0x" + "ab".repeat(65),
            charge: 1n, chargedTotal: BigInt(i), receipt: "r" + i, acceptedAt: i,
          }));
        }
        Promise.all(writes).then(() => {
          process.stdout.write("done\\n");
          process.kill(process.pid, "SIGKILL"); // no close(): the WAL is left as a crash leaves it
        });
        `,
        { DB: file, N: String(n) },
      );
      expect(result.stderr).to.equal("");
      expect(result.stdout).to.equal("done\n");
      expect(result.signal).to.equal("SIGKILL");
      // Every voucher was still in the log, unfolded: opening folds it.
      const raw = new Database(file);
      expect(raw.prepare("SELECT count(*) FROM voucher_log").pluck().get()).to.equal(n);
      raw.close();

      const store = openStore();
      let count = 0;
      for (let c = 0n; c < 7n; c++) count += store.loadVoucherAmounts(c).length;
      expect(count).to.equal(n);
      expect(store.findVoucher(BigInt(n % 7), BigInt(n))).to.include({ receipt: `r${n}`, acceptedAt: n });
      expect(store.getLedger(BigInt(n % 7))).to.include({ highestAmount: BigInt(n), chargedTotal: BigInt(n) });
    });

    it("loses no acknowledged write and tears no batch when killed at an arbitrary point", async () => {
      const channels = 8;
      const acked = new Array<number>(channels).fill(0);
      let total = 0;
      const result = await runChild(
        `
        const { openSqliteStore } = require("./src/store/sqlite");
        const store = openSqliteStore({ path: process.env.DB });
        async function writer(c) {
          for (let n = 1; ; n++) {
            await store.recordVoucher({
              channelId: BigInt(c), amount: BigInt(n), signature: "0x" + "cd".repeat(65),
              charge: 1n, chargedTotal: BigInt(n), receipt: "x".repeat(200), acceptedAt: n,
            });
            process.stdout.write(c + " " + n + "\\n"); // synchronous on a pipe: printed means acknowledged
          }
        }
        for (let c = 0; c < ${channels}; c++) writer(c);
        `,
        { DB: file },
        (line, kill) => {
          const [c, n] = line.split(" ").map(Number);
          acked[c] = Math.max(acked[c], n);
          if (++total === 3000) kill();
        },
      );
      expect(result.signal).to.equal("SIGKILL");
      expect(result.stderr).to.equal("");
      expect(total).to.be.at.least(3000);

      const db = new Database(file);
      expect(db.pragma("integrity_check", { simple: true })).to.equal("ok");
      db.close();
      const store = openStore();
      for (let c = 0; c < channels; c++) {
        const amounts = store.loadVoucherAmounts(BigInt(c)).map(Number);
        // Everything acknowledged is there, with no holes: batches commit whole and in order.
        expect(amounts.length).to.be.at.least(acked[c]);
        expect(amounts).to.deep.equal(Array.from({ length: amounts.length }, (_, i) => i + 1));
        const last = BigInt(amounts.length);
        expect(store.getLedger(BigInt(c))).to.include({ highestAmount: last, chargedTotal: last });
      }
    });
  });
});
