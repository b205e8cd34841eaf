import type { Address, PublicClient } from "viem";
import { priceFeedAbi } from "./abi";

/** One reading of a Chainlink-style feed's latest round. */
export interface FeedReading {
  /** The answer, with {@link FeedReading.decimals} decimals. */
  readonly answer: bigint;
  readonly decimals: number;
  /** Unix seconds the feed says the answer was last updated. */
  readonly updatedAt: number;
  /** Unix ms this reading was taken. */
  readonly readAt: number;
}

/**
 * Reads a Chainlink-style price feed (AggregatorV3Interface: `decimals`, `latestRoundData`) and
 * keeps the latest reading in memory. The chain watcher refreshes it on each poll, so the request
 * path only ever reads the cached value, never the RPC endpoint.
 */
export class PriceFeedReader {
  readonly address: Address;
  private decimals: number | undefined;
  private reading: FeedReading | undefined;
  private error: Error | undefined;

  constructor(
    private readonly client: PublicClient,
    address: Address,
  ) {
    this.address = address;
  }

  /** The latest successful reading; undefined before the first. */
  latest(): FeedReading | undefined {
    return this.reading;
  }

  /** Why the last refresh failed; undefined after a successful one. */
  lastError(): Error | undefined {
    return this.error;
  }

  /**
   * Reads the feed once. Never throws: a failed read keeps the previous reading (whose
   * `updatedAt` keeps ageing, so a feed unreadable for long enough turns stale) and records the
   * error.
   */
  async refresh(): Promise<void> {
    try {
      this.decimals ??= Number(
        await this.client.readContract({ address: this.address, abi: priceFeedAbi, functionName: "decimals" }),
      );
      const [, answer, , updatedAt] = await this.client.readContract({
        address: this.address,
        abi: priceFeedAbi,
        functionName: "latestRoundData",
      });
      this.reading = { answer, decimals: this.decimals, updatedAt: Number(updatedAt), readAt: Date.now() };
      this.error = undefined;
    } catch (error) {
      this.error = error instanceof Error ? error : new Error(String(error));
    }
  }
}
