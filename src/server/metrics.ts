import { REASONS, type ReasonCode } from "../protocol/reasons";
import type { ChannelRecord } from "../protocol/channel";
import type { Ticket } from "./engine";
import type { GateObserver } from "./gate";

/**
 * Prometheus metrics in the text exposition format (version 0.0.4), written by hand: paychan
 * needs counters, gauges and one histogram, which is a hundred lines, not a dependency.
 *
 * Recording is O(1) with no allocation for unlabelled series (the hot path); gauges that
 * summarize channel state are computed only when /metrics is scraped.
 */

/** Content-Type of {@link MetricsRegistry.render}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Label names → values of one series. */
export type Labels = Readonly<Record<string, string>>;

/** One sample reported by a collected gauge. */
export interface Sample {
  readonly labels?: Labels;
  readonly value: number | bigint;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Escapes a label value: backslash, double quote and newline, as the format requires. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes HELP text: backslash and newline. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Formats a sample value: Go-style float text, with the format's spellings of infinities and NaN. */
export function formatValue(value: number | bigint): string {
  if (typeof value === "bigint") return value.toString();
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(labels: Labels | undefined, extra?: string): string {
  const parts: string[] = [];
  if (labels) for (const key of Object.keys(labels)) parts.push(`${key}="${escapeLabelValue(labels[key])}"`);
  if (extra) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function seriesKey(labels: Labels | undefined): string {
  if (!labels) return "";
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}\u0000${labels[k]}`)
    .join("\u0001");
}

interface Metric {
  readonly name: string;
  render(out: string[]): void;
}

/** A monotonically increasing count. */
export class Counter implements Metric {
  private readonly series = new Map<string, { labels: Labels | undefined; value: number }>();

  constructor(
    readonly name: string,
    private readonly help: string,
  ) {}

  /** Adds `amount` (default 1) to the series with `labels`. */
  inc(labels?: Labels, amount = 1): void {
    if (!(amount >= 0)) throw new RangeError(`counter ${this.name} cannot decrease (got ${amount})`);
    const key = seriesKey(labels);
    const entry = this.series.get(key);
    if (entry) entry.value += amount;
    else this.series.set(key, { labels, value: amount });
  }

  /** The current value of a series (0 if never incremented). */
  get(labels?: Labels): number {
    return this.series.get(seriesKey(labels))?.value ?? 0;
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} counter`);
    for (const { labels, value } of this.series.values()) out.push(`${this.name}${labelText(labels)} ${value}`);
  }
}

/** A value that goes up and down: set directly, or computed by `collect` at each scrape. */
export class Gauge implements Metric {
  private readonly series = new Map<string, { labels: Labels | undefined; value: number | bigint }>();

  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly collect?: () => readonly Sample[],
  ) {}

  set(value: number | bigint, labels?: Labels): void {
    this.series.set(seriesKey(labels), { labels, value });
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} gauge`);
    const samples = this.collect ? this.collect() : [...this.series.values()];
    for (const s of samples) out.push(`${this.name}${labelText(s.labels)} ${formatValue(s.value)}`);
  }
}

/** Distribution of observed values over fixed cumulative buckets (unlabelled). */
export class Histogram implements Metric {
  private readonly bounds: readonly number[];
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    private readonly help: string,
    buckets: readonly number[],
  ) {
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new RangeError(`histogram ${name}: buckets must be distinct finite numbers`);
    }
    this.bounds = sorted;
    this.counts = new Array<number>(sorted.length).fill(0);
  }

  observe(value: number): void {
    // Per-bucket (non-cumulative) counts here; render() accumulates, keeping observe() short.
    const bounds = this.bounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]) {
        this.counts[i]++;
        break;
      }
    }
    this.sum += value;
    this.count++;
  }

  /** Number of observations so far. */
  get observations(): number {
    return this.count;
  }

  /** The bucket bounds and, per bucket, the observations at or below its bound (cumulative), then the total. */
  cumulativeCounts(): { readonly bounds: readonly number[]; readonly counts: number[]; readonly count: number } {
    let cumulative = 0;
    const counts = this.counts.map((c) => (cumulative += c));
    return { bounds: this.bounds, counts, count: this.count };
  }

  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} histogram`);
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i];
      out.push(`${this.name}_bucket{le="${formatValue(this.bounds[i])}"} ${cumulative}`);
    }
    out.push(`${this.name}_bucket{le="+Inf"} ${this.count}`);
    out.push(`${this.name}_sum ${formatValue(this.sum)}`, `${this.name}_count ${this.count}`);
  }
}

/** A set of metrics rendered together. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }

  gauge(name: string, help: string, collect?: () => readonly Sample[]): Gauge {
    return this.add(new Gauge(name, help, collect));
  }

  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }

  /** The exposition text of every metric. A collector that throws is skipped, not fatal. */
  render(): string {
    const out: string[] = [];
    for (const metric of this.metrics.values()) {
      const lines: string[] = [];
      try {
        metric.render(lines);
      } catch {
        continue;
      }
      out.push(...lines);
    }
    return out.join("\n") + "\n";
  }

  private add<M extends Metric>(metric: M): M {
    if (!NAME.test(metric.name)) throw new RangeError(`invalid metric name "${metric.name}"`);
    if (this.metrics.has(metric.name)) throw new RangeError(`metric "${metric.name}" registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }
}

/**
 * Verification latency buckets in seconds: from a warm in-memory check (~50 µs) to a slow
 * fsync on a loaded disk (~100 ms and beyond).
 */
export const VERIFICATION_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

/** WAL fsync buckets in seconds: a fast local SSD (~0.1 ms) to a stalled journal commit (~1 s). */
export const FSYNC_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

/** How a proxied request ended, for `paychan_requests_total{outcome}`. */
export type RequestOutcome =
  | "paid"
  | "retry"
  | "refused"
  | "free"
  | "no_route"
  | "upstream_error"
  | "bad_request"
  | "internal"
  | "relay"
  | "admin";

/** Money state of one channel, as the engine reports it. */
export interface LedgerSnapshot {
  readonly record: ChannelRecord;
  readonly highest: bigint;
}

/** Where the scrape-time gauges read their values. */
export interface MetricsSources {
  /** Every channel's record and highest accepted voucher (the engine's ledgers). */
  readonly ledgers: () => Iterable<LedgerSnapshot>;
  /** Blocks between the chain head and the watcher's processed block; undefined when unknown. */
  readonly watcherLagBlocks?: () => number | bigint | undefined;
}

/**
 * The paychan server's metrics, and a {@link GateObserver} that feeds them.
 *
 * - `paychan_vouchers_accepted_total`, `paychan_vouchers_rejected_total{reason}` (every reason
 *   code is pre-initialized to 0 so `rate()` works from the first scrape),
 *   `paychan_voucher_retries_total`
 * - `paychan_voucher_verification_seconds`: from header decoding to the voucher being durable
 * - `paychan_store_fsync_seconds`: each WAL fsync of a group commit (fed by the store's `onSync`)
 * - `paychan_unclaimed_atomic{token}`: Σ max(0, highest voucher − claimed on-chain), atomic units:
 *   money held as vouchers and not yet settled, i.e. what a lost database would cost
 * - `paychan_channels{status}`, `paychan_watcher_lag_blocks`
 * - `paychan_requests_total{outcome}`, `paychan_upstream_errors_total{kind}`,
 *   `paychan_relay_transactions_total{operation,result}`
 */
export class PaymentMetrics {
  readonly registry = new MetricsRegistry();
  readonly accepted: Counter;
  readonly rejected: Counter;
  readonly retries: Counter;
  readonly verification: Histogram;
  readonly fsync: Histogram;
  readonly requests: Counter;
  readonly upstreamErrors: Counter;
  readonly relay: Counter;
  /** The observer to pass as the gate's `observer`. */
  readonly observer: GateObserver;

  constructor(sources: MetricsSources) {
    const r = this.registry;
    this.accepted = r.counter("paychan_vouchers_accepted_total", "Vouchers accepted and made durable.");
    this.rejected = r.counter("paychan_vouchers_rejected_total", "Paid requests refused, by reason code.");
    for (const reason of Object.keys(REASONS)) this.rejected.inc({ reason }, 0);
    this.retries = r.counter(
      "paychan_voucher_retries_total",
      "Requests that repeated an accepted voucher and were answered again without a new charge.",
    );
    this.verification = r.histogram(
      "paychan_voucher_verification_seconds",
      "Time from reading a PAYMENT-SIGNATURE to the voucher being durable, for accepted vouchers.",
      VERIFICATION_BUCKETS,
    );
    this.fsync = r.histogram(
      "paychan_store_fsync_seconds",
      "Duration of each WAL fsync covering group-committed vouchers and charge adjustments (paid responses wait for it).",
      FSYNC_BUCKETS,
    );
    r.gauge(
      "paychan_unclaimed_atomic",
      "Sum over channels of (highest accepted voucher - amount claimed on-chain), token atomic units.",
      () => unclaimedByToken(sources.ledgers()),
    );
    r.gauge("paychan_channels", "Channels known to the server, by on-chain status.", () =>
      channelsByStatus(sources.ledgers()),
    );
    r.gauge(
      "paychan_watcher_lag_blocks",
      "Blocks between the chain head and the last block the watcher processed.",
      () => {
        const lag = sources.watcherLagBlocks?.();
        return lag === undefined ? [] : [{ value: lag }];
      },
    );
    this.requests = r.counter("paychan_requests_total", "Requests handled by the proxy, by outcome.");
    this.upstreamErrors = r.counter(
      "paychan_upstream_errors_total",
      "Upstream failures answered with 502, by kind (a paid request's charge stands).",
    );
    this.relay = r.counter("paychan_relay_transactions_total", "Gasless relay requests, by operation and result.");

    this.observer = {
      accepted: (_ticket: Ticket, seconds: number) => {
        this.accepted.inc();
        this.verification.observe(seconds);
      },
      rejected: (reason: ReasonCode) => this.rejected.inc({ reason }),
      retried: () => this.retries.inc(),
    };
  }

  /** The exposition text. */
  render(): string {
    return this.registry.render();
  }
}

function unclaimedByToken(ledgers: Iterable<LedgerSnapshot>): Sample[] {
  const byToken = new Map<string, bigint>();
  for (const { record, highest } of ledgers) {
    const token = record.token.toLowerCase();
    // A claim can exceed our highest voucher only if the store lost vouchers; count 0 then,
    // never a negative that would hide other channels' debt.
    const open = highest > record.claimedOnChain ? highest - record.claimedOnChain : 0n;
    byToken.set(token, (byToken.get(token) ?? 0n) + open);
  }
  return [...byToken].map(([token, value]) => ({ labels: { token }, value }));
}

function channelsByStatus(ledgers: Iterable<LedgerSnapshot>): Sample[] {
  let open = 0;
  let closed = 0;
  for (const { record } of ledgers) {
    if (record.status === "open") open++;
    else closed++;
  }
  return [
    { labels: { status: "open" }, value: open },
    { labels: { status: "closed" }, value: closed },
  ];
}
