import { expect } from "chai";
import type { Address } from "viem";
import { REASONS } from "../../src/protocol/reasons";
import type { Ticket } from "../../src/server/engine";
import { PaymentMetrics, type LedgerSnapshot } from "../../src/server/metrics";
import type { ChannelRecord } from "../../src/protocol/channel";

const USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e" as Address;
const OTHER = "0x5FbDB2315678afecb367f032d93F642f64180aa3" as Address;

function record(channelId: bigint, claimedOnChain: bigint, status: "open" | "closed", token = USDC): ChannelRecord {
  return {
    channelId,
    payer: OTHER,
    payee: OTHER,
    token,
    signer: OTHER,
    deposit: 10_000_000n,
    claimedOnChain,
    withdrawDelay: 86_400,
    withdrawReadyAt: 0,
    status,
    openedAtBlock: 1n,
    updatedAtBlock: 1n,
  };
}

/** Sample lines of `name` (no HELP/TYPE), as "name{labels} value". */
function samples(text: string, name: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(name) && !line.startsWith("#"));
}

describe("metrics", () => {
  describe("PaymentMetrics", () => {
    let ledgers: LedgerSnapshot[];
    let lag: number | undefined;
    let metrics: PaymentMetrics;

    beforeEach(() => {
      ledgers = [];
      lag = undefined;
      metrics = new PaymentMetrics({ ledgers: () => ledgers, watcherLagBlocks: () => lag });
    });

    it("counts charges per token and the rate each token was last charged at", async () => {
      const usdc = { charge: 1_000n } as Ticket;
      const eurc = { charge: 926n } as Ticket;
      metrics.observer.accepted?.(usdc, 0.001, { symbol: "USDC", rate: 10n ** 18n });
      metrics.observer.accepted?.(eurc, 0.001, { symbol: "EURC", rate: 1_080_000_000_000_000_000n });
      metrics.observer.accepted?.(eurc, 0.001, { symbol: "EURC", rate: 1_134_000_000_000_000_000n });
      const text = await metrics.render();
      expect(samples(text, "paychan_charged_atomic_total")).to.have.members([
        'paychan_charged_atomic_total{token="USDC"} 1000',
        'paychan_charged_atomic_total{token="EURC"} 1852',
      ]);
      expect(samples(text, "paychan_charge_rate")).to.have.members([
        'paychan_charge_rate{token="USDC"} 1',
        'paychan_charge_rate{token="EURC"} 1.134',
      ]);
    });

    it("pre-initializes every rejection reason at 0 and counts through the gate observer", async () => {
      const ticket = {} as Ticket;
      metrics.observer.accepted?.(ticket, 0.0002);
      metrics.observer.accepted?.(ticket, 0.002);
      metrics.observer.rejected?.("insufficient_amount");
      metrics.observer.rejected?.("insufficient_amount");
      metrics.observer.retried?.(1n, 1n);
      const text = await metrics.render();
      expect(samples(text, "paychan_vouchers_accepted_total")).to.deep.equal(["paychan_vouchers_accepted_total 2"]);
      const rejected = samples(text, "paychan_vouchers_rejected_total");
      expect(rejected).to.have.length(Object.keys(REASONS).length);
      expect(rejected).to.include('paychan_vouchers_rejected_total{reason="insufficient_amount"} 2');
      expect(rejected).to.include('paychan_vouchers_rejected_total{reason="invalid_signature"} 0');
      expect(samples(text, "paychan_voucher_retries_total")).to.deep.equal(["paychan_voucher_retries_total 1"]);
      expect(samples(text, "paychan_voucher_verification_seconds_count")).to.deep.equal([
        "paychan_voucher_verification_seconds_count 2",
      ]);
      expect(text).to.include('paychan_voucher_verification_seconds_bucket{le="0.00025"} 1');
      expect(text).to.include('paychan_voucher_verification_seconds_bucket{le="0.0025"} 2');
    });

    it("computes unclaimed amounts per token and channel counts at scrape time", async () => {
      ledgers.push(
        // What was charged counts, not a best voucher above it.
        { record: record(1n, 400n, "open"), charged: 1_000n },
        { record: record(2n, 0n, "open"), charged: 250n },
        // Claimed above the charge: counts 0, never negative.
        { record: record(3n, 900n, "closed"), charged: 500n },
        { record: record(4n, 0n, "open", OTHER), charged: 7n },
      );
      const text = await metrics.render();
      expect(samples(text, "paychan_unclaimed_atomic")).to.deep.equal([
        `paychan_unclaimed_atomic{token="${USDC.toLowerCase()}"} 850`,
        `paychan_unclaimed_atomic{token="${OTHER.toLowerCase()}"} 7`,
      ]);
      expect(samples(text, "paychan_channels")).to.deep.equal([
        'paychan_channels{status="open"} 3',
        'paychan_channels{status="closed"} 1',
      ]);
      // The gauges follow the ledgers without any recording call.
      ledgers.length = 0;
      expect(samples(await metrics.render(), "paychan_unclaimed_atomic")).to.deep.equal([]);
    });

    it("reports watcher lag only once it is known", async () => {
      expect(samples(await metrics.render(), "paychan_watcher_lag_blocks")).to.deep.equal([]);
      lag = 3;
      expect(samples(await metrics.render(), "paychan_watcher_lag_blocks")).to.deep.equal([
        "paychan_watcher_lag_blocks 3",
      ]);
    });

    it("serves prom-client's process metrics: CPU, memory, heap, GC and event-loop lag", async () => {
      const text = await metrics.render();
      for (const name of [
        "process_cpu_user_seconds_total",
        "process_resident_memory_bytes",
        "nodejs_heap_size_used_bytes",
        "nodejs_gc_duration_seconds",
        "nodejs_eventloop_lag_seconds",
      ]) {
        expect(text, name).to.match(new RegExp(`^# TYPE ${name} `, "m"));
      }
      expect(metrics.contentType).to.equal("text/plain; version=0.0.4; charset=utf-8");
    });

    it("keeps the metrics of two servers in one process apart", async () => {
      const other = new PaymentMetrics({ ledgers: () => [] });
      other.observer.accepted?.({} as Ticket, 0.001);
      other.requests.inc({ outcome: "paid" });
      expect(samples(await other.render(), "paychan_vouchers_accepted_total")).to.deep.equal([
        "paychan_vouchers_accepted_total 1",
      ]);
      expect(samples(await metrics.render(), "paychan_vouchers_accepted_total")).to.deep.equal([
        "paychan_vouchers_accepted_total 0",
      ]);
      expect(await metrics.render()).to.not.include('paychan_requests_total{outcome="paid"}');
    });

    it("adds gauges read at scrape time; one whose reader throws leaves out its samples, not the scrape", async () => {
      let batches = 0;
      metrics.gauge("paychan_settler_batches_sent", "Claim transactions confirmed since start.", () => [
        { value: batches },
      ]);
      metrics.gauge("broken", "Throws.", () => {
        throw new Error("boom");
      });
      metrics.gauge("by_cause", "Labelled.", () => [{ labels: { cause: "send" }, value: 2n }], ["cause"]);
      batches = 3;
      const text = await metrics.render();
      expect(samples(text, "paychan_settler_batches_sent")).to.deep.equal(["paychan_settler_batches_sent 3"]);
      expect(samples(text, "broken")).to.deep.equal([]);
      expect(samples(text, "by_cause")).to.deep.equal(['by_cause{cause="send"} 2']);
      expect(samples(text, "paychan_vouchers_accepted_total")).to.deep.equal(["paychan_vouchers_accepted_total 0"]);
    });

    it("reads the fsync histogram's cumulative bucket counts", async () => {
      for (const seconds of [0.00005, 0.003, 0.003, 2]) metrics.fsync.observe(seconds);
      const { bounds, counts, count } = await metrics.fsyncCounts();
      expect(bounds[0]).to.equal(0.0001);
      expect(bounds).to.have.length(counts.length);
      expect(counts[0]).to.equal(1);
      expect(counts[bounds.indexOf(0.005)]).to.equal(3);
      expect(counts[counts.length - 1]).to.equal(3);
      expect(count).to.equal(4);
    });
  });
});
