import type { Account, Address, Chain, Hex, PublicClient, TransactionReceipt, WalletClient } from "viem";

export interface SenderOptions {
  readonly publicClient: PublicClient;
  readonly walletClient: WalletClient;
  readonly account: Account;
  readonly chain?: Chain;
  /** Blocks a receipt must be buried under before it counts (0: the including block suffices). */
  readonly confirmations: number;
  readonly pollIntervalMs?: number;
  /** A transaction not mined after this long is replaced with higher fees (same nonce). */
  readonly replaceAfterMs?: number;
  /** Fee increase per replacement, percent (nodes require at least 10). */
  readonly feeBumpPercent?: number;
  /** Gives up after this long (ms) without a final receipt. */
  readonly timeoutMs?: number;
  /** Called on each RPC retry, for logs and metrics. */
  readonly onRetry?: (cause: string, error: unknown) => void;
}

/** Raised when a transaction cannot be brought to a final receipt. */
export class SendError extends Error {
  constructor(
    message: string,
    readonly cause_: string,
  ) {
    super(message);
    this.name = "SendError";
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends transactions from one key, one at a time, so no two of them ever race for a nonce
 * (the failure mode of sending a claim and a settle from one key concurrently). Each transaction
 * is followed to a final receipt: replaced with higher fees when stuck, re-sent when dropped, and
 * checked to still be canonical after its confirmations, so a reorg is noticed.
 */
export class TransactionSender {
  private queue: Promise<unknown> = Promise.resolve();
  private readonly pollIntervalMs: number;
  private readonly replaceAfterMs: number;
  private readonly feeBumpPercent: bigint;
  private readonly timeoutMs: number;

  constructor(private readonly options: SenderOptions) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.replaceAfterMs = options.replaceAfterMs ?? 30_000;
    this.feeBumpPercent = BigInt(options.feeBumpPercent ?? 20);
    this.timeoutMs = options.timeoutMs ?? 10 * 60_000;
  }

  /** The sending address. */
  get address(): Address {
    return this.options.account.address;
  }

  /**
   * Sends `data` to `to` and resolves with its final (confirmed, canonical) receipt.
   * `onBroadcast` sees every hash sent for it (the original and any replacement), so a caller can
   * record them durably and resolve them after a restart.
   */
  send(to: Address, data: Hex, onBroadcast?: (hash: Hex, nonce: number) => void): Promise<TransactionReceipt> {
    const run = this.queue.then(() => this.sendAndConfirm(to, data, onBroadcast));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async sendAndConfirm(
    to: Address,
    data: Hex,
    onBroadcast?: (hash: Hex, nonce: number) => void,
  ): Promise<TransactionReceipt> {
    const { publicClient, walletClient, account } = this.options;
    const started = Date.now();
    const nonce = await this.rpc("nonce", () =>
      publicClient.getTransactionCount({ address: account.address, blockTag: "pending" }),
    );
    const gas = ((await this.rpc("estimate_gas", () => publicClient.estimateGas({ account, to, data }))) * 12n) / 10n;
    let fees = await this.rpc("fees", () => publicClient.estimateFeesPerGas());
    const hashes: Hex[] = [];
    const broadcast = async () => {
      const hash = await this.rpc("send", () =>
        walletClient.sendTransaction({
          account,
          chain: this.options.chain ?? walletClient.chain ?? null,
          to,
          data,
          gas,
          nonce,
          maxFeePerGas: fees.maxFeePerGas,
          maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
        }),
      );
      hashes.push(hash);
      onBroadcast?.(hash, nonce);
    };
    await broadcast();
    let lastBroadcast = Date.now();

    for (;;) {
      if (Date.now() - started > this.timeoutMs) {
        throw new SendError(`no final receipt for nonce ${nonce} after ${this.timeoutMs} ms`, "timeout");
      }
      for (const hash of hashes) {
        const receipt = await this.receiptOf(hash);
        if (receipt && (await this.isFinal(receipt))) return receipt;
      }
      if (Date.now() - lastBroadcast >= this.replaceAfterMs) {
        // Stuck or dropped: the same nonce with higher fees replaces it (or re-sends it if the
        // mempool forgot it). A node refusing it as already known or nonce too low means one of
        // our transactions was mined; the receipts above will find it.
        fees = {
          maxFeePerGas: (fees.maxFeePerGas * (100n + this.feeBumpPercent)) / 100n,
          maxPriorityFeePerGas: (fees.maxPriorityFeePerGas * (100n + this.feeBumpPercent)) / 100n,
        } as typeof fees;
        await broadcast().catch((error: unknown) => this.options.onRetry?.("replace", error));
        lastBroadcast = Date.now();
      }
      await sleep(this.pollIntervalMs);
    }
  }

  private async receiptOf(hash: Hex): Promise<TransactionReceipt | undefined> {
    try {
      return await this.options.publicClient.getTransactionReceipt({ hash });
    } catch {
      return undefined;
    }
  }

  /** Buried under enough blocks, and its block is still the canonical one at that height. */
  private async isFinal(receipt: TransactionReceipt): Promise<boolean> {
    const { publicClient, confirmations } = this.options;
    const head = await this.rpc("block_number", () => publicClient.getBlockNumber({ cacheTime: 0 }));
    if (head - receipt.blockNumber < BigInt(confirmations)) return false;
    const block = await this.rpc("block", () => publicClient.getBlock({ blockNumber: receipt.blockNumber }));
    return block.hash === receipt.blockHash;
  }

  /** Retries an RPC call with exponential backoff and jitter until it succeeds or time runs out. */
  private async rpc<T>(cause: string, call: () => Promise<T>): Promise<T> {
    let delay = 200;
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (isPermanent(error) || Date.now() + delay > deadline) {
          throw new SendError(`${cause} failed: ${(error as Error).message ?? String(error)}`, cause);
        }
        this.options.onRetry?.(cause, error);
        await sleep(delay + Math.floor(Math.random() * delay));
        delay = Math.min(delay * 2, 10_000);
      }
    }
  }
}

/** Errors that retrying the same call cannot fix (the transaction itself would revert). */
function isPermanent(error: unknown): boolean {
  const text = String((error as Error)?.message ?? error);
  return /execution reverted|revert|insufficient funds|invalid sender/i.test(text);
}
