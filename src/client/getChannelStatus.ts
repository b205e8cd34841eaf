import type { Address, PublicClient } from "viem";
import { readChannel } from "../chain/readChannel";
import type { ChannelRecord } from "../protocol/channel";
import type { ClientStateStore } from "./stateStore";

/** A channel as the chain and (optionally) the client's own records see it. */
export interface ChannelStatus extends ChannelRecord {
  /** deposit − claimedOnChain: the most the payee can still claim plus what the payer gets back. */
  readonly unclaimedDeposit: bigint;
  /** From the client state, when a store was given and knows the channel. */
  readonly client?: {
    readonly signedMax: bigint;
    readonly chargedKnown: bigint;
    readonly receipts: number;
    /** deposit − chargedKnown: what the client can still spend as far as it knows. */
    readonly remaining: bigint;
  };
}

/**
 * Reads a channel from the chain (one block number and one `eth_call`) and joins what the client
 * state knows about it. Returns undefined for a channel that does not exist.
 */
export async function getChannelStatus(params: {
  readonly publicClient: PublicClient;
  readonly contract: Address;
  readonly channelId: bigint;
  readonly store?: ClientStateStore;
}): Promise<ChannelStatus | undefined> {
  const record = await readChannel(params.publicClient, params.contract, params.channelId);
  if (!record) return undefined;
  const id = `0x${params.channelId.toString(16)}`;
  const suffix = `:${params.contract.toLowerCase()}:${id}`;
  const known = params.store
    ? Object.entries(params.store.load().channels).find(([key]) => key.endsWith(suffix))?.[1]
    : undefined;
  return {
    ...record,
    unclaimedDeposit: record.deposit - record.claimedOnChain,
    ...(known
      ? {
          client: {
            signedMax: BigInt(known.signedMax),
            chargedKnown: BigInt(known.chargedKnown),
            receipts: known.receipts,
            remaining: record.deposit - BigInt(known.chargedKnown),
          },
        }
      : {}),
  };
}
