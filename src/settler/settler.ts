import {
  concatHex,
  decodeEventLog,
  encodeFunctionData,
  type Address,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
} from "viem";
import { estimateL1Fee } from "viem/op-stack";
import { paymentChannelsAbi } from "../chain/abi";
import { withRetry, type RetryPolicy } from "../chain/client";
import { claimsOfEvent } from "../chain/events";
import { encodeClaimItem } from "../protocol/voucher";
import type { ChannelLedger, PaymentStore } from "../store/types";
import type { SettlerPolicy } from "../shared/config";
import { selectClaims, toBatches, type ClaimCandidate } from "./policy";
import type { TransactionSender } from "../chain/sender";

/** The OP-stack GasPriceOracle predeploy (the same address on every OP-stack chain). */
export const GAS_PRICE_ORACLE: Address = "0x420000000000000000000000000000000000000F";

/** What one claim transaction did and cost. */
export interface BatchReport {
  readonly txHash: Hex;
  readonly channels: number;
  /** Sum paid to payees by this transaction, atomic units. */
  readonly amountClaimed: bigint;
  readonly gasUsed: bigint;
  /** L1 data fee (OP-stack chains), wei; 0 elsewhere. */
  readonly l1FeeWei: bigint;
  /** gasUsed × effectiveGasPrice + l1Fee, wei. */
  readonly costWei: bigint;
  readonly costPerChannelWei: bigint;
  readonly urgent: boolean;
}

/** Counters and gauges for /metrics. */
export interface SettlerMetrics {
  unclaimedAmount: bigint;
  unclaimedCount: number;
  oldestUnclaimedAgeSec: number;
  batchesSent: number;
  channelsClaimed: number;
  lastGasPerChannel: number;
  failures: Record<string, number>;
}

/** What one pass found and chose: says why a pass claimed nothing. */
export interface PassSummary {
  /** Channels with an unclaimed voucher. */
  readonly candidates: number;
  /** Their unclaimed total, atomic units. */
  readonly unclaimed: bigint;
  /** Channels chosen for a claim, urgent or routine. */
  readonly selected: number;
  /** Routine claims held back by the gas price ceiling. */
  readonly deferredForGas: number;
}

export interface SettlerOptions {
  readonly publicClient: PublicClient;
  readonly sender: TransactionSender;
  readonly store: PaymentStore;
  readonly contract: Address;
  readonly policy: SettlerPolicy;
  /** Whether to estimate the L1 data fee with the OP-stack GasPriceOracle. */
  readonly opStack: boolean;
  /** Seconds between scheduled runs. */
  readonly intervalSec: number;
  readonly onBatch?: (report: BatchReport) => void;
  readonly onError?: (cause: string, error: unknown) => void;
  readonly nowSec?: () => number;
  /**
   * How long {@link Settler.reconcile} waits for a claim an earlier run left in flight to be
   * mined and confirmed before leaving its channels to be claimed again. Default 120,000 ms.
   */
  readonly reconcileWaitMs?: number;
  /** Backoff of the settler's own RPC reads (simulations, getChannel, gas price). Default `DEFAULT_RETRY_POLICY`. */
  readonly retry?: Partial<RetryPolicy>;
}

/**
 * Claims accepted vouchers on-chain in batches. Every item is checked against the chain with an
 * eth_call simulation before it is sent, so a batch carries only valid items; the contract skips
 * any item that still fails, so one bad channel never blocks the others.
 *
 * A claim is idempotent on-chain (cumulative amounts; a stale item is skipped), which is what makes
 * every recovery path here safe: after a crash, a timeout, a dropped transaction or a reorg the
 * settler simply claims again whatever the chain does not show as claimed.
 */
export class Settler {
  readonly metrics: SettlerMetrics = {
    unclaimedAmount: 0n,
    unclaimedCount: 0,
    oldestUnclaimedAgeSec: 0,
    batchesSent: 0,
    channelsClaimed: 0,
    lastGasPerChannel: 0,
    failures: {},
  };
  /** The last pass's choice; undefined before the first pass. */
  lastPass: PassSummary | undefined;
  private readonly unclaimedSince = new Map<bigint, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<BatchReport[]> | undefined;
  private urgentRequested = false;
  private stopped = false;
  private readonly nowSec: () => number;

  constructor(private readonly options: SettlerOptions) {
    this.nowSec = options.nowSec ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Reconciles with the chain, then runs on schedule. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.reconcile();
    const tick = () => {
      // A run in progress when stop() was called must not schedule the next one.
      if (this.stopped) return;
      this.timer = setTimeout(() => {
        void this.runOnce().finally(tick);
      }, this.options.intervalSec * 1000);
    };
    tick();
  }

  /** Stops scheduling (and urgent runs) and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  /** Claims at once (a payer asked to withdraw): called by the watcher's withdrawal event. */
  claimUrgently(): void {
    if (this.stopped) return;
    this.urgentRequested = true;
    void this.runOnce();
  }

  /**
   * Brings the store in line with the chain: every channel's claimed amount is read from the
   * contract, and claims recorded as sent are resolved from their receipts. Nothing is claimed
   * twice (the chain is the truth) and nothing is forgotten (anything unclaimed stays a candidate).
   */
  async reconcile(): Promise<void> {
    const { store, publicClient, contract, sender } = this.options;
    await this.resolvePending(this.options.reconcileWaitMs ?? 120_000);
    // Claims the store has not seen (a direct claim, a run that crashed before recording its
    // broadcast), read at the confirmed head: a claim that may still be reorganized away must
    // not hide its channel from the candidates.
    const head = await this.rpc(() => publicClient.getBlockNumber({ cacheTime: 0 }));
    const confirmations = BigInt(sender.confirmations);
    const blockNumber = head > confirmations ? head - confirmations : 0n;
    for (const ledger of store.loadLedgers()) {
      if (ledger.highestAmount <= ledger.claimedAmount) continue;
      const channel = await this.rpc(() =>
        publicClient.readContract({
          address: contract,
          abi: paymentChannelsAbi,
          functionName: "getChannel",
          args: [ledger.channelId],
          blockNumber,
        }),
      );
      if (channel.claimed > ledger.claimedAmount) store.markClaimed(ledger.channelId, channel.claimed);
    }
  }

  /**
   * Resolves the claims recorded as sent (by an earlier process, or by a send of this one that
   * gave up): a confirmed, canonical receipt marks its channels claimed; one in a block later
   * reorganized away must not, so nothing less counts. Claims the node no longer knows are
   * forgotten (their channels are claimed again, idempotently); claims still pending or not yet
   * confirmed after `waitMs` stay recorded for a later pass.
   */
  private async resolvePending(waitMs: number): Promise<void> {
    const { store, sender } = this.options;
    // The broadcasts of one nonce (an original and its fee-bumped replacements) are one claim:
    // at most one of them is mined.
    const byNonce = new Map<number, Set<Hex>>();
    for (const pending of store.loadPendingClaims()) {
      const hashes = byNonce.get(pending.nonce) ?? new Set<Hex>();
      hashes.add(pending.txHash);
      byNonce.set(pending.nonce, hashes);
    }
    for (const hashes of byNonce.values()) {
      const outcome = await sender.resolve([...hashes], waitMs);
      if (outcome.status === "pending") continue;
      if (outcome.status === "final") this.applyReceipt(outcome.receipt);
      for (const hash of hashes) store.removePendingClaims(hash);
    }
  }

  /** One pass: select, simulate, send and confirm. Concurrent calls share the pass in progress. */
  runOnce(): Promise<BatchReport[]> {
    if (!this.running) {
      this.running = this.pass().finally(() => {
        this.running = undefined;
        // A withdrawal seen during the pass gets its own pass right away.
        if (this.urgentRequested && !this.stopped) void this.runOnce();
      });
    }
    return this.running;
  }

  /**
   * The candidates: channels charged more than the chain shows as claimed. Each is claimed with
   * the lowest voucher that covers its charged total, so the payer pays on-chain what its
   * receipts charged (or the least voucher above it); a higher voucher stays claimable later.
   */
  candidates(): ClaimCandidate[] {
    const { store } = this.options;
    const now = this.nowSec();
    const result: ClaimCandidate[] = [];
    let unclaimedAmount = 0n;
    let oldest = now;
    for (const ledger of store.loadLedgers()) {
      const channel = store.getChannel(ledger.channelId);
      const claimed = max(ledger.claimedAmount, channel?.claimedOnChain ?? 0n);
      const voucher =
        channel && channel.status !== "closed" && ledger.chargedTotal > claimed
          ? this.coveringVoucher(ledger)
          : undefined;
      if (!channel || !voucher) {
        this.unclaimedSince.delete(ledger.channelId);
        continue;
      }
      const since = this.unclaimedSince.get(ledger.channelId) ?? now;
      this.unclaimedSince.set(ledger.channelId, since);
      oldest = Math.min(oldest, since);
      unclaimedAmount += ledger.chargedTotal - claimed;
      result.push({
        channelId: ledger.channelId,
        amount: voucher.amount,
        signature: voucher.signature,
        chargedTotal: ledger.chargedTotal,
        claimed,
        withdrawReadyAt: channel.withdrawReadyAt,
        unclaimedSince: since,
      });
    }
    this.metrics.unclaimedAmount = unclaimedAmount;
    this.metrics.unclaimedCount = result.length;
    this.metrics.oldestUnclaimedAgeSec = now - oldest;
    return result;
  }

  /** The lowest stored voucher at or above the charged total; the highest one if none is stored. */
  private coveringVoucher(ledger: ChannelLedger): { amount: bigint; signature: Hex } | undefined {
    const stored = this.options.store.findCoveringVoucher(ledger.channelId, ledger.chargedTotal);
    if (stored) return stored;
    if (ledger.highestSignature === null || ledger.highestAmount < ledger.chargedTotal) return undefined;
    return { amount: ledger.highestAmount, signature: ledger.highestSignature };
  }

  private async pass(): Promise<BatchReport[]> {
    this.urgentRequested = false;
    const { publicClient, policy } = this.options;
    try {
      await this.resolvePending(0);
    } catch (error) {
      this.fail("pending", error);
    }
    let gasPrice = 0n;
    try {
      gasPrice = await this.rpc(() => publicClient.getGasPrice());
    } catch (error) {
      this.fail("gas_price", error);
    }
    const candidates = this.candidates();
    const selection = selectClaims(candidates, policy, this.nowSec(), gasPrice);
    this.lastPass = {
      candidates: candidates.length,
      unclaimed: this.metrics.unclaimedAmount,
      selected: selection.urgent.length + selection.routine.length,
      deferredForGas: selection.deferredForGas,
    };
    const reports: BatchReport[] = [];
    for (const [items, urgent] of [
      [selection.urgent, true],
      [selection.routine, false],
    ] as const) {
      for (const batch of toBatches(items, policy.maxBatchSize)) {
        try {
          const report = await this.claim(batch, urgent);
          if (report) reports.push(report);
        } catch (error) {
          this.fail("send", error);
        }
      }
    }
    return reports;
  }

  /** Simulates, drops items the chain would skip, sends one claimBatch and records the result. */
  private async claim(batch: readonly ClaimCandidate[], urgent: boolean): Promise<BatchReport | undefined> {
    const items = await this.validItems(batch);
    if (items.length === 0) return undefined;
    const { sender, store, contract } = this.options;
    const data = encodeFunctionData({
      abi: paymentChannelsAbi,
      functionName: "claimBatch",
      args: [concatHex(items.map((item) => item.encoded))],
    });
    const l1FeeWei = await this.l1Fee(data);
    const broadcast: Hex[] = [];
    const receipt = await sender.send(contract, data, (hash, nonce) => {
      broadcast.push(hash);
      for (const item of items) {
        store.addPendingClaim({
          channelId: item.channelId,
          amount: item.amount,
          txHash: hash,
          nonce,
          sentAt: Date.now(),
        });
      }
    });
    const claimed = this.applyReceipt(receipt);
    for (const hash of broadcast) store.removePendingClaims(hash);
    if (receipt.status !== "success") {
      this.fail("reverted", new Error(`claim transaction ${receipt.transactionHash} reverted`));
    }
    let amountClaimed = 0n;
    for (const item of items) {
      const after = claimed.get(item.channelId);
      if (after !== undefined) amountClaimed += after - item.claimed;
    }
    const costWei = receipt.gasUsed * receipt.effectiveGasPrice + l1FeeWei;
    const report: BatchReport = {
      txHash: receipt.transactionHash,
      channels: claimed.size,
      amountClaimed,
      gasUsed: receipt.gasUsed,
      l1FeeWei,
      costWei,
      costPerChannelWei: claimed.size > 0 ? costWei / BigInt(claimed.size) : costWei,
      urgent,
    };
    this.metrics.batchesSent += 1;
    this.metrics.channelsClaimed += claimed.size;
    if (claimed.size > 0) this.metrics.lastGasPerChannel = Number(receipt.gasUsed) / claimed.size;
    this.options.onBatch?.(report);
    return report;
  }

  /**
   * The items the chain accepts now. The whole batch is simulated first; only when some item
   * would be skipped is each one simulated alone to find which.
   */
  private async validItems(batch: readonly ClaimCandidate[]): Promise<EncodedClaim[]> {
    const encoded: EncodedClaim[] = [];
    for (const item of batch) {
      try {
        encoded.push({
          ...item,
          encoded: encodeClaimItem({ channelId: item.channelId, cumulativeAmount: item.amount }, item.signature),
        });
      } catch (error) {
        // A malformed signature in the store must not sink the batch it is in.
        this.fail("invalid_item", error);
      }
    }
    if (encoded.length === 0) return [];
    if ((await this.simulate(encoded)) === encoded.length) return encoded;
    const valid: EncodedClaim[] = [];
    for (const item of encoded) {
      if ((await this.simulate([item])) === 1) valid.push(item);
      else this.fail("invalid_item", new Error(`channel 0x${item.channelId.toString(16)} would be skipped`));
    }
    return valid;
  }

  private async simulate(items: readonly EncodedClaim[]): Promise<number> {
    const { publicClient, contract, sender } = this.options;
    const { result } = await this.rpc(() =>
      publicClient.simulateContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "claimBatch",
        args: [concatHex(items.map((item) => item.encoded))],
        account: sender.address,
      }),
    );
    return Number(result);
  }

  private async l1Fee(data: Hex): Promise<bigint> {
    if (!this.options.opStack) return 0n;
    const chain = this.options.publicClient.chain;
    // A chain object without the oracle in its `contracts` (a custom or local OP-stack chain)
    // would make viem throw: the predeploy address is the same on every OP-stack chain.
    const oracle = chain?.contracts?.gasPriceOracle;
    const gasPriceOracleAddress = oracle && "address" in oracle ? (oracle.address as Address) : GAS_PRICE_ORACLE;
    try {
      return await this.rpc(() =>
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        estimateL1Fee(this.options.publicClient as any, {
          account: this.options.sender.address,
          to: this.options.contract,
          data,
          chain,
          gasPriceOracleAddress,
        }),
      );
    } catch (error) {
      this.fail("l1_fee", error);
      return 0n;
    }
  }

  /** Records the claims (ChannelsClaimed, ChannelClaimed) of a receipt; returns channel → new claimed total. */
  private applyReceipt(receipt: TransactionReceipt): Map<bigint, bigint> {
    const claimed = new Map<bigint, bigint>();
    if (receipt.status !== "success") return claimed;
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== this.options.contract.toLowerCase()) continue;
      try {
        const event = decodeEventLog({ abi: paymentChannelsAbi, data: log.data, topics: log.topics });
        for (const { channelId, claimed: total } of claimsOfEvent(event)) {
          claimed.set(channelId, total);
          this.options.store.markClaimed(channelId, total);
          this.unclaimedSince.delete(channelId);
        }
      } catch {
        // Not one of ours (or an event this version does not decode): nothing to record.
      }
    }
    return claimed;
  }

  /** Retries a read through transient RPC failures (rate limits, timeouts); reverts are not retried. */
  private rpc<T>(call: () => Promise<T>): Promise<T> {
    return withRetry(call, this.options.retry ?? {});
  }

  private fail(cause: string, error: unknown): void {
    this.metrics.failures[cause] = (this.metrics.failures[cause] ?? 0) + 1;
    this.options.onError?.(cause, error);
  }
}

/** A candidate with its claimBatch item. */
interface EncodedClaim extends ClaimCandidate {
  readonly encoded: Hex;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
