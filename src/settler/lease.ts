/** The two calls of a shared store a {@link DutyLease} needs (see `PaymentStore.acquireLease`). */
export interface LeaseStore {
  acquireLease(name: string, holder: string, ttlMs: number): Promise<boolean>;
  releaseLease(name: string, holder: string): Promise<void>;
}

export interface DutyLeaseOptions {
  readonly store: LeaseStore;
  /** The duty, e.g. `settler:<chainId>:<contract>:<payee>`. */
  readonly name: string;
  /** Who this process is; unique per process. */
  readonly holder: string;
  /** Lease length. A dead holder's duty is taken over at most this long (plus one renewal period) later. */
  readonly ttlMs: number;
  /** Called when this process takes the duty. */
  readonly onAcquired: () => Promise<void> | void;
  /** Called when it may no longer be sure to hold it (a renewal was refused or is overdue). */
  readonly onLost: () => Promise<void> | void;
  readonly onError?: (error: unknown) => void;
}

/**
 * Holds a duty that exactly one of several processes performs, by an expiring lease in the shared
 * store: every process tries to take or renew it every third of its length; the holder renews it,
 * the others take it once it has expired (by the database's clock, so the processes' clocks do not
 * matter). The holder gives the duty up on its own clock a renewal period before the lease can
 * expire, so two holders never overlap while the clocks run at the same rate.
 */
export class DutyLease {
  private timer: NodeJS.Timeout | undefined;
  private held = false;
  /** Local time (ms) after which the lease may have expired: it was renewed before this minus ttl. */
  private validUntil = 0;
  private ticking = false;
  private transition: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly options: DutyLeaseOptions) {}

  /** Whether this process holds the duty now. */
  get holding(): boolean {
    return this.held;
  }

  start(): void {
    this.stopped = false;
    const period = Math.max(100, Math.floor(this.options.ttlMs / 3));
    this.timer = setInterval(() => void this.tick(period), period);
    void this.tick(period);
  }

  /** Stops competing; a held duty is stopped (onLost) and the lease released at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.transition;
    if (this.held) {
      await this.drop();
      await this.options.store.releaseLease(this.options.name, this.options.holder).catch(this.options.onError);
    }
  }

  private async tick(period: number): Promise<void> {
    // A renewal that hangs must not keep a duty whose lease may have expired.
    if (this.held && Date.now() >= this.validUntil - period) await this.drop();
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const sent = Date.now();
      let granted = false;
      try {
        granted = await this.options.store.acquireLease(this.options.name, this.options.holder, this.options.ttlMs);
      } catch (error) {
        this.options.onError?.(error);
        return;
      }
      if (this.stopped) return;
      if (granted) {
        this.validUntil = sent + this.options.ttlMs;
        if (!this.held) {
          this.held = true;
          this.transition = this.transition.then(() => this.options.onAcquired()).catch(this.options.onError);
        }
      } else if (this.held) {
        await this.drop();
      }
    } finally {
      this.ticking = false;
    }
  }

  private async drop(): Promise<void> {
    if (!this.held) return;
    this.held = false;
    this.transition = this.transition.then(() => this.options.onLost()).catch(this.options.onError);
    await this.transition;
  }
}
