import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  http,
  InvalidParamsRpcError,
  MethodNotFoundRpcError,
  MethodNotSupportedRpcError,
  type Chain,
  type PublicClient,
} from "viem";

/**
 * RPC access for the off-request-path chain code (watcher, settler): a viem public client whose
 * HTTP transport already retries briefly, plus {@link withRetry}, an outer exponential backoff
 * with jitter for the longer outages (rate limits, restarting nodes) that the transport's short
 * retries do not outlast.
 */

/** How {@link createChainClient} builds its transport. */
export interface ChainClientOptions {
  /** JSON-RPC endpoint (http or https). */
  readonly url: string;
  /** Optional viem chain, used only for formatting; the watcher never depends on it. */
  readonly chain?: Chain;
  /** Per-request timeout in ms. Default 10,000. */
  readonly timeoutMs?: number;
  /**
   * Retries done by viem's transport itself (with its own exponential delay and `Retry-After`
   * support). Kept low by default (2) because {@link withRetry} wraps every call again: the two
   * multiply.
   */
  readonly retryCount?: number;
  /** Base delay of the transport's retries in ms. Default 150. */
  readonly retryDelayMs?: number;
  /** JSON-RPC batching; off by default because some providers meter a batch as many requests. */
  readonly batch?: boolean;
}

/** Creates the public client used by the watcher and the settler. */
export function createChainClient(options: ChainClientOptions): PublicClient {
  return createPublicClient({
    chain: options.chain,
    transport: http(options.url, {
      timeout: options.timeoutMs ?? 10_000,
      retryCount: options.retryCount ?? 2,
      retryDelay: options.retryDelayMs ?? 150,
      batch: options.batch ?? false,
    }),
  });
}

/** Exponential backoff parameters. */
export interface RetryPolicy {
  /** Total tries, the first included (>= 1). */
  readonly attempts: number;
  /** Delay before the first retry, doubled for each further retry. */
  readonly baseDelayMs: number;
  /** Upper bound of any single delay. */
  readonly maxDelayMs: number;
}

/** 5 tries over roughly 0.25 + 0.5 + 1 + 2 s (with jitter): enough to ride out a short 429 burst. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 8_000 };

/**
 * The delay before retry number `attempt` (0 for the first retry): "equal jitter", i.e. half of
 * the capped exponential plus a random share of the other half. The random half spreads the
 * retries of many clients hit by the same outage; the fixed half guarantees the delay actually
 * grows, which full jitter (possibly ~0 ms) does not.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** Thrown by {@link sleep} and {@link withRetry} when their signal aborts. */
export class AbortedError extends Error {
  constructor() {
    super("aborted");
    this.name = "AbortedError";
  }
}

/** Resolves after `ms`, or rejects with {@link AbortedError} as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Whether retrying an RPC error can help. Reverts, invalid parameters and unsupported methods
 * are answers, not outages: the same request gets the same answer. Everything else (HTTP 429 and
 * 5xx, timeouts, dropped connections, -32005 rate limits, malformed responses from a struggling
 * load balancer) is treated as transient.
 */
export function isRetryableRpcError(error: unknown): boolean {
  if (error instanceof AbortedError) return false;
  if (error instanceof BaseError) {
    const fatal = error.walk(
      (e) =>
        e instanceof ContractFunctionRevertedError ||
        e instanceof InvalidParamsRpcError ||
        e instanceof MethodNotFoundRpcError ||
        e instanceof MethodNotSupportedRpcError,
    );
    if (fatal) return false;
  }
  return true;
}

/** Options of {@link withRetry}. */
export interface WithRetryOptions extends Partial<RetryPolicy> {
  /** Aborts the waits between tries (the call in flight is bounded by the transport timeout). */
  readonly signal?: AbortSignal;
  /** Default {@link isRetryableRpcError}. */
  readonly isRetryable?: (error: unknown) => boolean;
  /** Called before each wait, e.g. for logging. */
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `fn` until it resolves, a non-retryable error occurs, or the attempts are used up; the
 * last error is rethrown. Waits {@link backoffDelay} between tries.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: WithRetryOptions = {}): Promise<T> {
  const policy: RetryPolicy = {
    attempts: options.attempts ?? DEFAULT_RETRY_POLICY.attempts,
    baseDelayMs: options.baseDelayMs ?? DEFAULT_RETRY_POLICY.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_RETRY_POLICY.maxDelayMs,
  };
  const isRetryable = options.isRetryable ?? isRetryableRpcError;
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw new AbortedError();
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt + 1 >= policy.attempts || !isRetryable(error)) throw error;
      const delay = backoffDelay(attempt, policy);
      options.onRetry?.(error, attempt + 1, delay);
      await sleep(delay, options.signal);
    }
  }
}
