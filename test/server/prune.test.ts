import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, http, type PublicClient } from "viem";
import { hardhat } from "viem/chains";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import type { AcceptedVoucher } from "../../src/store/types";
import { ASSET, CONTRACT, MemoryStore, PAYEE_KEY, channelRecord, payerChannel } from "../helpers/memoryStore";

const WINDOW = 60_000;

describe("PaymentServer, never started, on a memory store", () => {
  let dir: string;
  let server: PaymentServer;
  let store: MemoryStore;

  const voucher = (channelId: bigint, amount: bigint, acceptedAt: number): AcceptedVoucher => ({
    channelId,
    amount,
    signature: `0x${"11".repeat(65)}`,
    charge: 1n,
    chargedTotal: amount,
    receipt: "{}",
    acceptedAt,
  });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-prune-"));
    const file = path.join(dir, "paychan.json");
    writeFileSync(
      file,
      JSON.stringify({
        upstream: "http://127.0.0.1:9",
        network: "localhost",
        rpcUrl: "http://127.0.0.1:9",
        contract: CONTRACT,
        token: { address: ASSET, decimals: 6, name: "USD Coin", version: "2" },
        routes: { "GET /paid": "$0.001" },
        retryWindowMs: WINDOW,
        database: { path: "unused.db" },
      }),
    );
    store = new MemoryStore();
    // Never started: no RPC call is made.
    const publicClient = createPublicClient({ chain: hardhat, transport: http("http://127.0.0.1:9") }) as PublicClient;
    server = await createPaymentServer(loadConfig(file, { [PAYEE_KEY_ENV]: PAYEE_KEY }), {
      store,
      publicClient,
      logger: createLogger({ level: "silent" }),
    });
  });

  afterEach(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("pruneVouchers", () => {
    it("deletes what is claimed and past the retry window, then leaves a channel alone until its next claim", async () => {
      const [a, b] = [payerChannel(0n), payerChannel(1n)];
      const t0 = 1_800_000_000_000;
      for (const amount of [1n, 2n, 3n, 4n]) {
        await store.recordVoucher(voucher(a, amount, t0 + Number(amount) * 1_000));
        await store.recordVoucher(voucher(b, amount, t0));
      }
      server.engine.applyChannel(channelRecord({ channelId: a, claimedOnChain: 3n }));
      server.engine.applyChannel(channelRecord({ channelId: b })); // nothing claimed: never pruned

      // Inside the window for the vouchers of 2 and 3: only 1 goes.
      expect(server.pruneVouchers(t0 + 2_500 + WINDOW - 1_000)).to.equal(1);
      expect(store.loadVoucherAmounts(a)).to.deep.equal([2n, 3n, 4n]);
      // Later, 2 and 3 go; 4 is above the claim and stays, as do all of b's.
      expect(server.pruneVouchers(t0 + 10_000 + WINDOW)).to.equal(2);
      expect(store.loadVoucherAmounts(a)).to.deep.equal([4n]);
      expect(store.loadVoucherAmounts(b)).to.deep.equal([1n, 2n, 3n, 4n]);
      // Nothing left below the claim, a window after it was seen: the channel is skipped from now on.
      const calls = () => store.pruneCalls;
      const before = calls();
      expect(server.pruneVouchers(t0 + 20_000 + 2 * WINDOW)).to.equal(0);
      expect(server.pruneVouchers(t0 + 30_000 + 2 * WINDOW)).to.equal(0);
      expect(calls()).to.equal(before + 1);
      // A new claim on-chain makes it due again.
      server.engine.applyChannel(channelRecord({ channelId: a, claimedOnChain: 4n }));
      expect(server.pruneVouchers(t0 + 40_000 + 3 * WINDOW)).to.equal(1);
      expect(store.loadVoucherAmounts(a)).to.deep.equal([]);
    });
  });

  describe("health", () => {
    it("reports the store down once it refuses writes for good (a failed fsync)", () => {
      const storeOk = () => (server.health().store as { ok: boolean }).ok;
      expect(storeOk()).to.equal(true);
      let failure: Error | undefined = new Error("fsync of the SQLite WAL failed");
      store.failure = () => failure;
      expect(server.health()).to.deep.include({ ok: false, store: { ok: false } });
      failure = undefined;
      expect(storeOk()).to.equal(true);
    });
  });
});
