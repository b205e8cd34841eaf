import type { Address } from "viem";

/**
 * A channel as the chain reports it, maintained by the chain watcher from contract events and
 * read by the verification engine (never through RPC on the request path) and by the settler.
 */
export interface ChannelRecord {
  readonly channelId: bigint;
  readonly payer: Address;
  readonly payee: Address;
  readonly token: Address;
  /** The voucher signer, encoded in the channel id. */
  readonly signer: Address;
  readonly deposit: bigint;
  /** Cumulative amount claimed on-chain. */
  readonly claimedOnChain: bigint;
  /** Seconds. */
  readonly withdrawDelay: number;
  /** Unix seconds from which the payer can finalize a requested withdrawal; 0 when none is pending. */
  readonly withdrawReadyAt: number;
  readonly status: "open" | "closed";
  /** Block of the opening event; confirmations are counted from it. */
  readonly openedAtBlock: bigint;
  /** Block of the latest event applied to this record. */
  readonly updatedAtBlock: bigint;
}
