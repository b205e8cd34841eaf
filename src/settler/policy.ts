import type { Hex } from "viem";
import type { SettlerPolicy } from "../shared/config";

/** A channel charged more than is claimed on-chain. */
export interface ClaimCandidate {
  readonly channelId: bigint;
  /** The voucher to claim: the lowest accepted one at or above the charged total. */
  readonly amount: bigint;
  readonly signature: Hex;
  /** What the channel's requests were charged in all. */
  readonly chargedTotal: bigint;
  /** Amount already claimed on-chain. */
  readonly claimed: bigint;
  /** Unix seconds when the payer can finalize a withdrawal; 0 when none is pending. */
  readonly withdrawReadyAt: number;
  /** Unix seconds since when this channel has had an unclaimed voucher. */
  readonly unclaimedSince: number;
}

/** The claims to send now, urgent ones first. */
export interface ClaimSelection {
  readonly urgent: readonly ClaimCandidate[];
  readonly routine: readonly ClaimCandidate[];
  /** Routine claims held back by the gas price ceiling. */
  readonly deferredForGas: number;
}

/**
 * Chooses what to claim. A channel whose payer asked to withdraw is urgent: it is claimed at once,
 * whatever its amount and the gas price, because once the payer finalizes the voucher is worthless.
 */
export function selectClaims(
  candidates: readonly ClaimCandidate[],
  policy: SettlerPolicy,
  nowSec: number,
  gasPriceWei: bigint,
): ClaimSelection {
  const urgent: ClaimCandidate[] = [];
  const routine: ClaimCandidate[] = [];
  for (const candidate of candidates) {
    if (candidate.chargedTotal <= candidate.claimed || candidate.amount < candidate.chargedTotal) continue;
    if (candidate.withdrawReadyAt !== 0) urgent.push(candidate);
    else if (
      candidate.chargedTotal - candidate.claimed >= policy.minUnclaimed ||
      nowSec - candidate.unclaimedSince >= policy.maxAgeSec
    ) {
      routine.push(candidate);
    }
  }
  // The exit closest to completion goes first.
  urgent.sort((a, b) => a.withdrawReadyAt - b.withdrawReadyAt);
  routine.sort((a, b) => a.unclaimedSince - b.unclaimedSince);
  const gasTooHigh = policy.maxGasPriceWei !== undefined && gasPriceWei > policy.maxGasPriceWei;
  return {
    urgent,
    routine: gasTooHigh ? [] : routine,
    deferredForGas: gasTooHigh ? routine.length : 0,
  };
}

/** Splits claims into batches of at most `size`. */
export function toBatches<T>(items: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  return batches;
}
