import { expect } from "chai";
import type { Address } from "viem";
import { REASONS } from "../../src/protocol/reasons";
import type { Ticket } from "../../src/server/engine";
import {
  escapeLabelValue,
  formatValue,
  MetricsRegistry,
  PaymentMetrics,
  type LedgerSnapshot,
} from "../../src/server/metrics";
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
  describe("exposition format", () => {
    it("writes HELP, TYPE and samples for counters and gauges, escaping label values", () => {
      const registry = new MetricsRegistry();
      const counter = registry.counter("x_total", "Things.\nMore");
      counter.inc();
      counter.inc({ kind: 'a"b\\c\nd' }, 2);
      registry.gauge("y", "A gauge.").set(1.5, { k: "v" });
      const text = registry.render();
      expect(text).to.equal(
        [
          "# HELP x_total Things.\\nMore",
          "# TYPE x_total counter",
          "x_total 1",
          'x_total{kind="a\\"b\\\\c\\nd"} 2',
          "# HELP y A gauge.",
          "# TYPE y gauge",
          'y{k="v"} 1.5',
          "",
        ].join("\n"),
      );
    });

    it("renders cumulative histogram buckets, +Inf, sum and count", () => {
      const registry = new MetricsRegistry();
      const h = registry.histogram("lat_seconds", "Latency.", [0.1, 0.01, 1]);
      for (const v of [0.005, 0.05, 0.05, 0.5, 5]) h.observe(v);
      expect(samples(registry.render(), "lat_seconds")).to.deep.equal([
        'lat_seconds_bucket{le="0.01"} 1',
        'lat_seconds_bucket{le="0.1"} 3',
        'lat_seconds_bucket{le="1"} 4',
        'lat_seconds_bucket{le="+Inf"} 5',
        "lat_seconds_sum 5.605",
        "lat_seconds_count 5",
      ]);
    });

    it("reads a histogram's cumulative bucket counts", () => {
      const h = new MetricsRegistry().histogram("f_seconds", "x", [0.001, 0.01]);
      for (const v of [0.0005, 0.005, 0.005, 2]) h.observe(v);
      expect(h.cumulativeCounts()).to.deep.equal({ bounds: [0.001, 0.01], counts: [1, 3], count: 4 });
    });

    it("formats special values and escapes", () => {
      expect(formatValue(Infinity)).to.equal("+Inf");
      expect(formatValue(-Infinity)).to.equal("-Inf");
      expect(formatValue(NaN)).to.equal("NaN");
      expect(formatValue(2n ** 80n)).to.equal("1208925819614629174706176");
      expect(escapeLabelValue("plain")).to.equal("plain");
    });

    it("refuses bad names, duplicate metrics, decreasing counters and bad buckets", () => {
      const registry = new MetricsRegistry();
      expect(() => registry.counter("bad-name", "x")).to.throw(RangeError);
      registry.counter("ok_total", "x");
      expect(() => registry.gauge("ok_total", "x")).to.throw(/registered twice/);
      expect(() => registry.counter("c_total", "x").inc(undefined, -1)).to.throw(/cannot decrease/);
      expect(() => registry.histogram("h", "x", [])).to.throw(RangeError);
      expect(() => registry.histogram("h2", "x", [1, 1])).to.throw(RangeError);
    });

    it("skips a collector that throws instead of failing the scrape", () => {
      const registry = new MetricsRegistry();
      registry.gauge("broken", "x", () => {
        throw new Error("boom");
      });
      registry.counter("fine_total", "x").inc();
      expect(registry.render()).to.equal("# HELP fine_total x\n# TYPE fine_total counter\nfine_total 1\n");
    });
  });

  describe("PaymentMetrics", () => {
    let ledgers: LedgerSnapshot[];
    let lag: number | undefined;
    let metrics: PaymentMetrics;

    beforeEach(() => {
      ledgers = [];
      lag = undefined;
      metrics = new PaymentMetrics({ ledgers: () => ledgers, watcherLagBlocks: () => lag });
    });

    it("pre-initializes every rejection reason at 0 and counts through the gate observer", () => {
      const ticket = {} as Ticket;
      metrics.observer.accepted?.(ticket, 0.0002);
      metrics.observer.accepted?.(ticket, 0.002);
      metrics.observer.rejected?.("insufficient_amount");
      metrics.observer.rejected?.("insufficient_amount");
      metrics.observer.retried?.(1n, 1n);
      const text = metrics.render();
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

    it("computes unclaimed amounts per token and channel counts at scrape time", () => {
      ledgers.push(
        { record: record(1n, 400n, "open"), highest: 1_000n },
        { record: record(2n, 0n, "open"), highest: 250n },
        // Claimed above our highest (a lost store): counts 0, never negative.
        { record: record(3n, 900n, "closed"), highest: 500n },
        { record: record(4n, 0n, "open", OTHER), highest: 7n },
      );
      const text = metrics.render();
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
      expect(samples(metrics.render(), "paychan_unclaimed_atomic")).to.deep.equal([]);
    });

    it("reports watcher lag only once it is known", () => {
      expect(samples(metrics.render(), "paychan_watcher_lag_blocks")).to.deep.equal([]);
      lag = 3;
      expect(samples(metrics.render(), "paychan_watcher_lag_blocks")).to.deep.equal(["paychan_watcher_lag_blocks 3"]);
    });
  });
});
