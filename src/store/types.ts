import type { Address, Hex } from "viem";
import type { ChannelRecord } from "../protocol/channel";

/** One voucher the server accepted for one paid request. */
export interface AcceptedVoucher {
  readonly channelId: bigint;
  /** The voucher's cumulative amount; unique per channel. */
  readonly amount: bigint;
  /** 65-byte signature as 0x-hex. */
  readonly signature: Hex;
  /** What this request was charged. */
  readonly charge: bigint;
  /** The channel's charged total after this request. */
  readonly chargedTotal: bigint;
  /** The signed receipt returned to the client (encoded as sent). */
  readonly receipt: string;
  /** Unix milliseconds. */
  readonly acceptedAt: number;
}

/** The per-channel money state: what was charged and the best voucher that pays for it. */
export interface ChannelLedger {
  readonly channelId: bigint;
  /** Sum of all charges on this channel. */
  readonly chargedTotal: bigint;
  /** The highest accepted voucher amount (0 when none). */
  readonly highestAmount: bigint;
  /** Signature of the highest voucher, or null when none. */
  readonly highestSignature: Hex | null;
  /** Highest amount the settler has seen confirmed as claimed on-chain. */
  readonly claimedAmount: bigint;
}

/** A claim the settler has sent and not yet seen confirmed. */
export interface PendingClaim {
  readonly channelId: bigint;
  readonly amount: bigint;
  readonly txHash: Hex;
  readonly nonce: number;
  /** Unix milliseconds. */
  readonly sentAt: number;
}

/** A voucher whose charge the store decides ({@link PaymentStore.chargeVoucher}). */
export interface ChargeRequest {
  readonly channelId: bigint;
  readonly amount: bigint;
  /** 65-byte signature as 0x-hex, already verified. */
  readonly signature: Hex;
  /** What this request is charged (the route's price, or its maximum for "upto"). */
  readonly charge: bigint;
  /** The amount this instance knows as claimed on-chain: a voucher at or below it pays nothing new. */
  readonly floor: bigint;
  /** Unix milliseconds. */
  readonly acceptedAt: number;
  /** The receipt (encoded as sent) for the charged total the store assigns to this request. */
  sign(chargedTotal: bigint): string;
}

/**
 * What {@link PaymentStore.chargeVoucher} decided, durably. `ledger` is the channel's state after
 * the commit that decided it.
 * - accepted: charged, stored with its receipt.
 * - stored: this (channel, amount) was accepted before, by this or another instance: a retry if
 *   the signature and request match, a reuse otherwise (the caller tells them apart).
 * - insufficient: the channel's charged total plus the charge would exceed its best voucher.
 * - below_floor: at or below the amount claimed on-chain and not stored: nothing left to claim.
 */
export type ChargeOutcome =
  | { readonly kind: "accepted"; readonly voucher: AcceptedVoucher; readonly ledger: ChannelLedger }
  | { readonly kind: "stored"; readonly voucher: AcceptedVoucher; readonly ledger: ChannelLedger }
  | { readonly kind: "insufficient"; readonly ledger: ChannelLedger }
  | { readonly kind: "below_floor"; readonly ledger: ChannelLedger };

/**
 * Durable storage of everything paychan must not lose. The embedded default is SQLite
 * (src/store/sqlite.ts); a PostgreSQL backend implements the same interface.
 *
 * Only {@link PaymentStore.recordVoucher} and {@link PaymentStore.adjustCharge} are on the
 * request path: they resolve once the write is durable (group commit, one fsync per batch).
 */
export interface PaymentStore {
  /** Durably records an accepted voucher and updates its channel's ledger in the same commit. */
  recordVoucher(voucher: AcceptedVoucher): Promise<void>;
  /**
   * Durably lowers the charge of an accepted voucher after a usage-based route charged less than
   * its maximum; `charge` is the final charge and `chargedTotal` the channel's new total.
   */
  adjustCharge(channelId: bigint, amount: bigint, charge: bigint, chargedTotal: bigint, receipt: string): Promise<void>;
  /** Every channel ledger, for start-up. */
  loadLedgers(): ChannelLedger[];
  /** The ledger of one channel, or undefined. */
  getLedger(channelId: bigint): ChannelLedger | undefined;
  /**
   * The amounts of the vouchers accepted on a channel (used to refuse reuse after a restart),
   * only those above `above` when given.
   */
  loadVoucherAmounts(channelId: bigint, above?: bigint): bigint[];
  /**
   * Deletes, in one transaction, the vouchers of each channel at or below its `upTo` amount that
   * were accepted before `acceptedBefore` (Unix ms); returns how many went, per entry. Callers pass
   * the amount confirmed claimed on-chain, below which the engine refuses everything but retries,
   * and the start of the retry window, so no answer the server may still give is lost.
   */
  pruneVouchers(floors: readonly { channelId: bigint; upTo: bigint }[], acceptedBefore: number): number[];
  /**
   * Why the store refuses writes for good (e.g. a failed fsync: restart the process), if it does.
   * Health checks report the store as down then.
   */
  failure?(): Error | undefined;
  /** One accepted voucher, for idempotent retries. */
  findVoucher(channelId: bigint, amount: bigint): AcceptedVoucher | undefined;
  /**
   * The stored voucher of a channel with the lowest amount at or above `atLeast`, or undefined:
   * the settler claims the least that covers what was charged.
   */
  findCoveringVoucher(channelId: bigint, atLeast: bigint): AcceptedVoucher | undefined;

  /** Inserts or replaces a channel's on-chain record. */
  upsertChannel(channel: ChannelRecord): void;
  /** Every known channel record. */
  loadChannels(): ChannelRecord[];
  /** One channel record, or undefined. */
  getChannel(channelId: bigint): ChannelRecord | undefined;

  /** The watcher's resume point: the last block fully processed, per key (e.g. "watcher:<chainId>:<contract>"). */
  getCursor(key: string): bigint | undefined;
  setCursor(key: string, block: bigint): void;

  /** Records that `amount` is confirmed claimed on-chain for a channel. */
  markClaimed(channelId: bigint, amount: bigint): void;
  /** Records a claim transaction the settler sent. */
  addPendingClaim(claim: PendingClaim): void;
  /** Forgets pending claims of a transaction (confirmed, replaced or dropped). */
  removePendingClaims(txHash: Hex): void;
  /** Claims sent and not yet confirmed. */
  loadPendingClaims(): PendingClaim[];

  /**
   * Present on a store several server processes share (PostgreSQL): the store, not the engine's
   * memory, decides the charge. Under the channel's row lock it checks the voucher against the
   * stored ledger (used amounts, charged total, best voucher), assigns the charged total, has the
   * receipt signed for it and commits, group-committed like {@link recordVoucher}; it resolves
   * once the decision is durable.
   */
  chargeVoucher?(request: ChargeRequest): Promise<ChargeOutcome>;
  /**
   * Present on a shared store: takes or renews the lease `name` for `holder` until `ttlMs` from
   * now (by the database's clock). Resolves true when `holder` holds it.
   */
  acquireLease?(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives a lease up early, if `holder` holds it, so another process takes over at once. */
  releaseLease?(name: string, holder: string): Promise<void>;

  /** Flushes pending writes and closes the store. */
  close(): Promise<void>;
}

/** An EIP-3009 authorization submitted for an `exact` payment. */
export interface ExactAuthorization {
  readonly token: Address;
  /** The authorization's `from`. */
  readonly payer: Address;
  /** Its 32-byte nonce, 0x-hex. */
  readonly nonce: Hex;
  readonly value: bigint;
  /** The mined transfer, once settled. */
  readonly txHash: Hex | null;
  /** Unix milliseconds. */
  readonly createdAt: number;
}

/**
 * Durable memory of the `exact` authorizations a server submitted, so the same authorization is
 * never settled (nor served) twice, across restarts too. Writes are durable when they return.
 */
export interface AuthorizationStore {
  /** Records an authorization about to be submitted; false when (token, payer, nonce) is already recorded. */
  reserveAuthorization(authorization: Omit<ExactAuthorization, "txHash">): boolean;
  /** Records the mined transfer of a reserved authorization. */
  completeAuthorization(token: Address, payer: Address, nonce: Hex, txHash: Hex): void;
  /** Forgets a reserved authorization that never reached the chain, so its payer may send it again. */
  releaseAuthorization(token: Address, payer: Address, nonce: Hex): void;
  /** One recorded authorization, or undefined. */
  findAuthorization(token: Address, payer: Address, nonce: Hex): ExactAuthorization | undefined;
}
