import { secp256k1 } from "@noble/curves/secp256k1";
import { privateKeyToAccount } from "viem/accounts";
import type { Address, Hex } from "viem";
import { createVoucherHasher, createVoucherSignatureVerifier } from "../../src/protocol/fastVerify";
import { channelIdHex, encodePaymentSignature, type ChannelOffer } from "../../src/protocol/headers";
import { ReceiptSigner } from "../../src/protocol/receipt";
import { channelIdFor, voucherDigest, voucherDomain, type VoucherDomain } from "../../src/protocol/voucher";
import { VerificationEngine, type EngineOptions, type VoucherSignatureVerifier } from "../../src/server/engine";
import { PaymentGate, type GateOptions, type OfferTerms } from "../../src/server/gate";
import type { ChannelRecord } from "../../src/protocol/channel";
import type { AcceptedVoucher, ChannelLedger, PaymentStore, PendingClaim } from "../../src/store/types";
import { HARDHAT_KEYS } from "./hardhatKeys";

/**
 * An in-memory {@link PaymentStore} for unit tests, plus the fixtures the engine, gate, paywall
 * and fuzz tests share (keys, channel records, voucher signing, a wired-up gate).
 *
 * The store mirrors the SQLite store's request-path semantics: recordVoucher inserts the voucher
 * and sets the ledger's chargedTotal to the voucher's chargedTotal and its highest amount to the
 * max; adjustCharge rewrites one voucher and sets the ledger's chargedTotal. Writes are visible
 * to reads as soon as they resolve.
 */
export interface MemoryStoreOptions {
  /** Delay before each recordVoucher/adjustCharge resolves (ms), or a function choosing one per call. */
  delayMs?: number | (() => number);
  /**
   * When true (or true for a voucher), recordVoucher rejects after the delay, as a failed disk
   * would; the switch is read when the write completes.
   */
  failRecordVoucher?: boolean | ((voucher: AcceptedVoucher) => boolean);
}

export class MemoryStore implements PaymentStore {
  delayMs: number | (() => number);
  failRecordVoucher: boolean | ((voucher: AcceptedVoucher) => boolean);
  /** recordVoucher calls, successful or not. */
  recordCalls = 0;
  /** What failure() reports (a store that refuses writes for good); none by default. */
  failure: () => Error | undefined = () => undefined;
  /** Calls of pruneVouchers (each is one transaction in a real store). */
  pruneCalls = 0;
  /** adjustCharge calls, in order. */
  readonly adjustCalls: { channelId: bigint; amount: bigint; charge: bigint; chargedTotal: bigint }[] = [];
  readonly vouchers = new Map<string, AcceptedVoucher>();
  private readonly ledgers = new Map<bigint, ChannelLedger>();
  private readonly channels = new Map<bigint, ChannelRecord>();
  private readonly cursors = new Map<string, bigint>();
  private readonly pending: PendingClaim[] = [];
  closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.delayMs = options.delayMs ?? 0;
    this.failRecordVoucher = options.failRecordVoucher ?? false;
  }

  private async delay(): Promise<void> {
    const ms = typeof this.delayMs === "function" ? this.delayMs() : this.delayMs;
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
    else await Promise.resolve();
  }

  async recordVoucher(voucher: AcceptedVoucher): Promise<void> {
    this.recordCalls++;
    await this.delay();
    const fail = this.failRecordVoucher;
    if (typeof fail === "function" ? fail(voucher) : fail)
      throw new Error("memory store: recordVoucher switched to fail");
    const key = voucherKey(voucher.channelId, voucher.amount);
    const existing = this.vouchers.get(key);
    if (existing && existing.signature.toLowerCase() !== voucher.signature.toLowerCase()) {
      throw new Error(`memory store: voucher ${key} already stored with another signature`);
    }
    this.vouchers.set(key, voucher);
    const ledger = this.ledgers.get(voucher.channelId);
    const higher = !ledger || voucher.amount > ledger.highestAmount;
    this.ledgers.set(voucher.channelId, {
      channelId: voucher.channelId,
      chargedTotal: voucher.chargedTotal,
      highestAmount: higher ? voucher.amount : ledger.highestAmount,
      highestSignature: higher ? voucher.signature : ledger.highestSignature,
      claimedAmount: ledger?.claimedAmount ?? 0n,
    });
  }

  async adjustCharge(
    channelId: bigint,
    amount: bigint,
    charge: bigint,
    chargedTotal: bigint,
    receipt: string,
  ): Promise<void> {
    this.adjustCalls.push({ channelId, amount, charge, chargedTotal });
    await this.delay();
    const key = voucherKey(channelId, amount);
    const existing = this.vouchers.get(key);
    if (!existing) throw new Error(`memory store: adjustCharge of unknown voucher ${key}`);
    this.vouchers.set(key, { ...existing, charge, chargedTotal, receipt });
    const ledger = this.ledgers.get(channelId);
    if (ledger) this.ledgers.set(channelId, { ...ledger, chargedTotal });
  }

  loadLedgers(): ChannelLedger[] {
    return [...this.ledgers.values()];
  }

  getLedger(channelId: bigint): ChannelLedger | undefined {
    return this.ledgers.get(channelId);
  }

  /** Seeds a ledger directly (a state restored from an earlier run). */
  setLedger(ledger: ChannelLedger): void {
    this.ledgers.set(ledger.channelId, ledger);
  }

  loadVoucherAmounts(channelId: bigint, above = -1n): bigint[] {
    return [...this.vouchers.values()]
      .filter((v) => v.channelId === channelId && v.amount > above)
      .map((v) => v.amount);
  }

  pruneVouchers(floors: readonly { channelId: bigint; upTo: bigint }[], acceptedBefore: number): number[] {
    this.pruneCalls++;
    return floors.map(({ channelId, upTo }) => {
      let removed = 0;
      for (const [key, v] of this.vouchers) {
        if (v.channelId === channelId && v.amount <= upTo && v.acceptedAt < acceptedBefore) {
          this.vouchers.delete(key);
          removed++;
        }
      }
      return removed;
    });
  }

  findVoucher(channelId: bigint, amount: bigint): AcceptedVoucher | undefined {
    return this.vouchers.get(voucherKey(channelId, amount));
  }

  findCoveringVoucher(channelId: bigint, atLeast: bigint): AcceptedVoucher | undefined {
    let best: AcceptedVoucher | undefined;
    for (const voucher of this.vouchers.values()) {
      if (voucher.channelId !== channelId || voucher.amount < atLeast) continue;
      if (best === undefined || voucher.amount < best.amount) best = voucher;
    }
    return best;
  }

  upsertChannel(channel: ChannelRecord): void {
    this.channels.set(channel.channelId, channel);
  }

  loadChannels(): ChannelRecord[] {
    return [...this.channels.values()];
  }

  getChannel(channelId: bigint): ChannelRecord | undefined {
    return this.channels.get(channelId);
  }

  getCursor(key: string): bigint | undefined {
    return this.cursors.get(key);
  }

  setCursor(key: string, block: bigint): void {
    this.cursors.set(key, block);
  }

  markClaimed(channelId: bigint, amount: bigint): void {
    const ledger = this.ledgers.get(channelId);
    if (ledger && amount > ledger.claimedAmount) this.ledgers.set(channelId, { ...ledger, claimedAmount: amount });
  }

  addPendingClaim(claim: PendingClaim): void {
    this.pending.push(claim);
  }

  removePendingClaims(txHash: Hex): void {
    for (let i = this.pending.length - 1; i >= 0; i--) if (this.pending[i].txHash === txHash) this.pending.splice(i, 1);
  }

  loadPendingClaims(): PendingClaim[] {
    return [...this.pending];
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function voucherKey(channelId: bigint, amount: bigint): string {
  return `${channelId.toString(16)}:${amount.toString(16)}`;
}

// ------------------------------------------------------------------ shared fixtures

export const CHAIN_ID = 84532;
export const NETWORK = "eip155:84532";
export const CONTRACT: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
export const ASSET: Address = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
export const OTHER_ADDRESS: Address = "0x1111111111111111111111111111111111111111";
/** Deterministic test keys (never funded anywhere). */
export const PAYER_KEY: Hex = HARDHAT_KEYS[1];
export const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
export const RECEIPT_KEY: Hex = HARDHAT_KEYS[3];
export const PAYER: Address = privateKeyToAccount(PAYER_KEY).address;
export const PAYEE: Address = privateKeyToAccount(PAYEE_KEY).address;
export const DOMAIN: VoucherDomain = voucherDomain(CHAIN_ID, CONTRACT);
/** secp256k1 group order. */
export const CURVE_N = secp256k1.CURVE.n;

/** The payer's `nonce`-th channel id. */
export function payerChannel(nonce = 0n): bigint {
  return channelIdFor(PAYER, nonce);
}

/** An open channel paying {@link PAYEE} in {@link ASSET}; override any field. */
export function channelRecord(overrides: Partial<ChannelRecord> = {}): ChannelRecord {
  const channelId = overrides.channelId ?? payerChannel();
  return {
    channelId,
    payer: PAYER,
    payee: PAYEE,
    token: ASSET,
    signer: PAYER,
    deposit: 10_000_000n,
    claimedOnChain: 0n,
    withdrawDelay: 86_400,
    withdrawReadyAt: 0,
    status: "open",
    openedAtBlock: 1n,
    updatedAtBlock: 1n,
    ...overrides,
  };
}

/**
 * Signs a voucher synchronously with `key` (default: the payer): a 65-byte r ‖ s ‖ v signature,
 * low-s unless `highS` asks for its malleable twin (s' = n − s, parity flipped).
 */
export function signVoucher(
  channelId: bigint,
  amount: bigint,
  options: { key?: Hex; domain?: VoucherDomain; highS?: boolean } = {},
): Hex {
  const digest = voucherDigest(options.domain ?? DOMAIN, { channelId, cumulativeAmount: amount });
  const sig = secp256k1.sign(digest.slice(2), (options.key ?? PAYER_KEY).slice(2), { lowS: true });
  let s = sig.s;
  let recovery = sig.recovery;
  if (options.highS) {
    s = CURVE_N - s;
    recovery ^= 1;
  }
  return `0x${word(sig.r)}${word(s)}${(27 + recovery).toString(16)}`;
}

/** A 32-byte big-endian hex word, without 0x. */
export function word(value: bigint): string {
  return value.toString(16).padStart(64, "0");
}

/** The engine's signature check as production wires it (src/protocol/fastVerify). */
export function fastVerifier(chainId = CHAIN_ID, contract: Address = CONTRACT): VoucherSignatureVerifier {
  return createVoucherSignatureVerifier(createVoucherHasher(chainId, contract));
}

export const TERMS: OfferTerms = {
  network: NETWORK,
  contract: CONTRACT,
  asset: ASSET,
  payee: PAYEE,
  decimals: 6,
  tokenName: "USDC",
  tokenVersion: "2",
  minDeposit: 1_000_000n,
  minWithdrawDelay: 3_600,
};

export interface HarnessOptions {
  store?: MemoryStoreOptions;
  engine?: Partial<EngineOptions>;
  gate?: Partial<Omit<GateOptions, "engine" | "store" | "receipts" | "terms">>;
  /** Channels the engine knows at start (default: one open channel of the payer). */
  channels?: ChannelRecord[];
  /** Ledgers to restore with the channels. */
  ledgers?: ChannelLedger[];
}

/** A gate wired to a fresh engine, memory store and receipt signer. */
export interface Harness {
  readonly store: MemoryStore;
  readonly engine: VerificationEngine;
  readonly gate: PaymentGate;
  readonly receipts: ReceiptSigner;
  /** Number of times the engine asked the signature verifier. */
  verifications(): number;
  /** The fixed-price offer the gate makes for `price`. */
  offer(price: bigint): ChannelOffer;
  /** A PAYMENT-SIGNATURE header for the payer's voucher (`channelId`, `amount`) under `offer`. */
  header(amount: bigint, price: bigint, options?: { channelId?: bigint; signature?: Hex }): string;
}

export function harness(options: HarnessOptions = {}): Harness {
  const store = new MemoryStore(options.store);
  const verify = options.engine?.verifySignature ?? fastVerifier();
  let verifications = 0;
  const engine = new VerificationEngine({
    payee: PAYEE,
    tokens: [ASSET],
    withdrawSafetyMarginSec: 3_600,
    minWithdrawDelay: 60,
    loadUsedAmounts: (channelId, above) => store.loadVoucherAmounts(channelId, above),
    ...options.engine,
    verifySignature: (channelId, amount, signature) => {
      verifications++;
      return verify(channelId, amount, signature);
    },
  });
  const channels = options.channels ?? [channelRecord()];
  engine.restore(options.ledgers ?? [], channels);
  for (const ledger of options.ledgers ?? []) store.setLedger(ledger);
  const receipts = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT);
  const gate = new PaymentGate({ engine, store, receipts, terms: TERMS, ...options.gate });
  return {
    store,
    engine,
    gate,
    receipts,
    verifications: () => verifications,
    offer: (price) => gate.offer(price, "fixed"),
    header: (amount, price, opts = {}) => {
      const channelId = opts.channelId ?? payerChannel();
      return encodePaymentSignature(gate.offer(price, "fixed"), {
        channelId: channelIdHex(channelId),
        amount: amount.toString(),
        signature: opts.signature ?? signVoucher(channelId, amount),
      });
    },
  };
}
