import { getAddress, type Address, type PublicClient } from "viem";
import type { ChannelRecord } from "../protocol/channel";
import { paymentChannelsAbi } from "./abi";

/** Where and when {@link readChannel} reads. */
export interface ReadChannelOptions {
  /**
   * Block to read the state at. Default: the latest block, fetched first so that the record says
   * which block it describes.
   */
  readonly blockNumber?: bigint;
  /**
   * The block of the opening event, when the caller knows it. Default: the block read at, an
   * upper bound: confirmations counted from it are never more than the real ones.
   */
  readonly openedAtBlock?: bigint;
}

/** `IPaymentChannels.Channel.status` values. */
const STATUS_OPEN = 1;
const STATUS_CLOSED = 2;

/**
 * Reads one channel with `getChannel` (one `eth_call`) and converts it to a {@link ChannelRecord}.
 * Returns undefined when the channel does not exist at that block. `updatedAtBlock` is the block
 * read at: the record reflects every event up to and including it.
 *
 * No retries here; callers wrap it in `withRetry` with their own policy and abort signal.
 */
export async function readChannel(
  client: PublicClient,
  contract: Address,
  channelId: bigint,
  options: ReadChannelOptions = {},
): Promise<ChannelRecord | undefined> {
  const blockNumber = options.blockNumber ?? (await client.getBlockNumber({ cacheTime: 0 }));
  const channel = await client.readContract({
    address: contract,
    abi: paymentChannelsAbi,
    functionName: "getChannel",
    args: [channelId],
    blockNumber,
  });
  if (channel.status !== STATUS_OPEN && channel.status !== STATUS_CLOSED) return undefined;
  return {
    channelId,
    payer: getAddress(channel.payer),
    payee: getAddress(channel.payee),
    token: getAddress(channel.token),
    signer: getAddress(channel.signer),
    deposit: channel.deposit,
    claimedOnChain: channel.claimed,
    withdrawDelay: channel.withdrawDelay,
    withdrawReadyAt: channel.withdrawReadyAt,
    status: channel.status === STATUS_OPEN ? "open" : "closed",
    openedAtBlock: options.openedAtBlock ?? blockNumber,
    updatedAtBlock: blockNumber,
  };
}
