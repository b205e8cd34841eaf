import {
  BlockNotFoundError,
  keccak256,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
  type Account,
  type Address,
  type Chain,
  type Hex,
  type PublicClient,
  type TransactionReceipt,
  type WalletClient,
} from "viem";

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

  /** Blocks a receipt must be buried under before it counts. */
  get confirmations(): number {
    return this.options.confirmations;
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

  /**
   * Where the broadcasts of one nonce (`hashes`, e.g. recorded by an earlier process) stand,
   * waiting up to `waitMs` while one of them is pending or not yet confirmed: "final" with the
   * confirmed, canonical receipt of the one that was mined; "dropped" when the node knows none of
   * them; "pending" when one is still in the mempool or not buried deep enough after the wait.
   */
  async resolve(
    hashes: readonly Hex[],
    waitMs: number,
  ): Promise<{ status: "final"; receipt: TransactionReceipt } | { status: "pending" | "dropped" }> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      let waiting = false;
      for (const hash of hashes) {
        const receipt = await this.receiptOf(hash);
        if (receipt) {
          const state = await this.finality(receipt);
          if (state === "final") return { status: "final", receipt };
          if (state === "buried_too_shallow") waiting = true;
        } else if (await this.isKnown(hash)) {
          waiting = true;
        }
      }
      if (!waiting) return { status: "dropped" };
      if (Date.now() >= deadline) return { status: "pending" };
      await sleep(this.pollIntervalMs);
    }
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
    const chain = this.options.chain ?? walletClient.chain;
    const chainId = chain?.id ?? (await this.rpc("chain_id", () => publicClient.getChainId()));
    const hashes: Hex[] = [];
    const announce = (hash: Hex) => {
      if (hashes.includes(hash)) return;
      hashes.push(hash);
      onBroadcast?.(hash, nonce);
    };
    /** One broadcast of this nonce at the current fees; `retry` retries transient RPC errors. */
    const broadcast = async (retry: boolean) => {
      const request = {
        to,
        data,
        gas,
        nonce,
        maxFeePerGas: fees.maxFeePerGas,
        maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
      };
      let call: () => Promise<Hex>;
      if (account.type === "local") {
        // Signed here, so the hash does not depend on the node's answer: when that answer is lost
        // (timeout, dropped connection) and the retry is refused as already known or nonce too
        // low, the first attempt got through and its hash is followed like any other.
        const serializedTransaction = await account.signTransaction({ ...request, chainId, type: "eip1559" });
        const hash = keccak256(serializedTransaction);
        call = async () => {
          try {
            await walletClient.sendRawTransaction({ serializedTransaction });
          } catch (error) {
            if (!isAlreadySent(error)) throw error;
          }
          return hash;
        };
      } else {
        call = () => walletClient.sendTransaction({ ...request, account, chain: chain ?? null });
      }
      announce(retry ? await this.rpc("send", call) : await call());
    };
    await broadcast(true);
    let lastBroadcast = Date.now();

    for (;;) {
      if (Date.now() - started > this.timeoutMs) {
        throw new SendError(`no final receipt for nonce ${nonce} after ${this.timeoutMs} ms`, "timeout");
      }
      let mined = false;
      for (const hash of hashes) {
        const receipt = await this.receiptOf(hash);
        if (!receipt) continue;
        const state = await this.finality(receipt);
        if (state === "final") return receipt;
        if (state === "buried_too_shallow") mined = true;
      }
      // Mined but not yet confirmed: wait; replacing it would only be refused (nonce too low).
      if (!mined && Date.now() - lastBroadcast >= this.replaceAfterMs) {
        const used = await this.rpc("nonce", () =>
          publicClient.getTransactionCount({ address: account.address, blockTag: "latest" }),
        );
        if (used <= nonce) {
          // Stuck, dropped, or reorged out: the same nonce with higher fees replaces it (or
          // re-sends it if the mempool forgot it). One attempt only, so the receipts above keep
          // being polled: a refusal as already known means one of ours is in the mempool.
          fees = {
            maxFeePerGas: (fees.maxFeePerGas * (100n + this.feeBumpPercent)) / 100n,
            maxPriorityFeePerGas: (fees.maxPriorityFeePerGas * (100n + this.feeBumpPercent)) / 100n,
          } as typeof fees;
          await broadcast(false).catch((error: unknown) => this.options.onRetry?.("replace", error));
          lastBroadcast = Date.now();
        } else {
          // The nonce is taken: by one of ours mined since the poll above (the next poll finds
          // it), or by a transaction sent from this key elsewhere, which no replacement can beat.
          let ours = false;
          for (const hash of hashes) if (await this.receiptOf(hash)) ours = true;
          if (!ours) throw new SendError(`nonce ${nonce} was used by another transaction`, "nonce_taken");
        }
      }
      await sleep(this.pollIntervalMs);
    }
  }

  /** The receipt, or undefined when the node has none (not mined); RPC failures are retried. */
  private receiptOf(hash: Hex): Promise<TransactionReceipt | undefined> {
    return this.rpc("receipt", () =>
      this.options.publicClient.getTransactionReceipt({ hash }).catch((error: unknown) => {
        if (error instanceof TransactionReceiptNotFoundError) return undefined;
        throw error;
      }),
    );
  }

  /** Whether the node knows the transaction (pending in its mempool, or mined). */
  private isKnown(hash: Hex): Promise<boolean> {
    return this.rpc("transaction", () =>
      this.options.publicClient.getTransaction({ hash }).then(
        () => true,
        (error: unknown) => {
          if (error instanceof TransactionNotFoundError) return false;
          throw error;
        },
      ),
    );
  }

  /**
   * "final": buried under enough blocks, and its block is still the canonical one at that height;
   * "buried_too_shallow": canonical but not confirmed enough yet; "orphaned": its block was
   * reorganized away (the transaction may be pending again, or gone).
   */
  private async finality(receipt: TransactionReceipt): Promise<"final" | "buried_too_shallow" | "orphaned"> {
    const { publicClient, confirmations } = this.options;
    const head = await this.rpc("block_number", () => publicClient.getBlockNumber({ cacheTime: 0 }));
    if (head < receipt.blockNumber) return "orphaned";
    const hash = await this.rpc("block", () =>
      publicClient.getBlock({ blockNumber: receipt.blockNumber }).then(
        (block) => block.hash,
        (error: unknown) => {
          // Gone between the two calls: the chain just got shorter.
          if (error instanceof BlockNotFoundError) return undefined;
          throw error;
        },
      ),
    );
    if (hash !== receipt.blockHash) return "orphaned";
    return head - receipt.blockNumber < BigInt(confirmations) ? "buried_too_shallow" : "final";
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

/**
 * A node refusing a raw transaction it already has, or whose nonce a transaction already used:
 * after a send whose answer was lost, this means the first attempt got through.
 */
function isAlreadySent(error: unknown): boolean {
  const text = String((error as Error)?.message ?? error);
  return /already known|known transaction|already imported|nonce too low|nonce has already been used/i.test(text);
}
