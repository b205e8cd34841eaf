import type { AddressInfo } from "node:net";
import { createWalletClient, http, isAddressEqual, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { checkDeployment } from "../chain/checkDeployment";
import { createChainClient } from "../chain/client";
import { viemChain } from "../chain/viemChain";
import { ChannelWatcher } from "../chain/watcher";
import { PriceFeedReader } from "../chain/priceFeed";
import { createVoucherHasher, createVoucherSignatureVerifier } from "../protocol/fastVerify";
import { ReceiptSigner } from "../protocol/receipt";
import { TransactionSender } from "../chain/sender";
import { openPgStore } from "../store/postgres";
import { openSqliteStore } from "../store/sqlite";
import type { ChannelRecord } from "../protocol/channel";
import type { AuthorizationStore, PaymentStore } from "../store/types";
import type { ServerConfig } from "../shared/config";
import { VerificationEngine } from "./engine";
import { PaymentGate } from "./gate";
import { ExactPayments } from "./exactPayments";
import { FacilitatorExactSettler, LocalExactSettler, type ExactSettler } from "./exactSettler";
import { createLogger, type Logger } from "../shared/log";
import { PaymentMetrics } from "./metrics";
import { PaywallPage } from "./paywallPage";
import { PaymentProxy, type HealthReport } from "./proxy";
import { QuoteBook, type AcceptedToken } from "./quoteBook";
import { feedRate, fixedRate } from "./rateSource";
import { GaslessRelay } from "./relay";

/**
 * Assembles a paychan server from a validated {@link ServerConfig}: SQLite (or shared PostgreSQL) store → verification
 * engine (restored from the store) → chain watcher (feeding the engine) → receipt signer →
 * payment gate (observed by metrics) → reverse proxy (+ gasless relay when a relayer key is set).
 *
 * Money state has one rule here: the engine must never hold a channel with a fresh (zero)
 * ledger while the store has a real one, or vouchers between the stored highest and the
 * charged total could be spent twice after a restart. Every channel record therefore enters the
 * engine through {@link applyRecord}, which seeds a channel the engine does not hold yet from
 * the store's ledger.
 */

/** Overrides for tests and embedding; everything defaults to what the config describes. */
export interface PaymentServerOptions {
  readonly logger?: Logger;
  /** A store to use instead of opening `config.database`; it is closed by stop() all the same. */
  readonly store?: PaymentStore;
  readonly publicClient?: PublicClient;
  /** Grace period for in-flight requests at stop(), ms. Default 10,000. */
  readonly shutdownGraceMs?: number;
  /** How often {@link PaymentServer.pruneVouchers} runs once the chain is started, ms. Default 60,000. */
  readonly pruneIntervalMs?: number;
}

/** A running (or startable) paychan server. */
export interface PaymentServer {
  readonly config: ServerConfig;
  readonly gate: PaymentGate;
  readonly engine: VerificationEngine;
  readonly store: PaymentStore;
  readonly watcher: ChannelWatcher;
  readonly receipts: ReceiptSigner;
  readonly metrics: PaymentMetrics;
  readonly proxy: PaymentProxy;
  readonly relay: GaslessRelay | undefined;
  readonly logger: Logger;
  /** Health as served on the health endpoint. */
  health(): HealthReport;
  /**
   * Reads a channel the engine does not hold yet from the chain (a few lookups at a time, as the
   * gate does for an unknown channel) and hands it to the engine when it pays this server. A
   * channel of another payee is returned too, and stays out of the engine.
   */
  lookupChannel(channelId: bigint): Promise<ChannelRecord | undefined>;
  /**
   * Checks the RPC endpoint and that `config.contract` is a compatible PaymentChannels contract
   * (rejecting with a `ChainSetupError` that says what to fix), then starts the chain watcher.
   * Enough when only the gate is used (the Express `paywall` middleware); {@link start} does it too.
   */
  startChain(): Promise<void>;
  /** {@link startChain}, then the reverse proxy listens; resolves with the bound address. */
  start(): Promise<AddressInfo>;
  /** Stops accepting, drains in-flight requests, stops the watcher, flushes and closes the store. Idempotent. */
  stop(): Promise<void>;
  /**
   * Deletes the stored vouchers no answer needs any more: at or below their channel's amount
   * confirmed claimed on-chain (the engine answers those only as retries) and accepted before
   * the retry window. Runs every `pruneIntervalMs` once the chain is started, so the store grows
   * with the vouchers since the last claim, not with every request ever served. Returns how many
   * went.
   */
  pruneVouchers(now?: number): number;
}

/** Whether `store` also records EIP-3009 authorizations (the SQLite store does). */
function isAuthorizationStore(store: PaymentStore): store is PaymentStore & AuthorizationStore {
  const s = store as Partial<AuthorizationStore>;
  return typeof s.reserveAuthorization === "function" && typeof s.findAuthorization === "function";
}

/** Most unknown-channel lookups (RPC reads) in flight at once. */
const MAX_CHANNEL_LOOKUPS = 64;

/**
 * Builds a server: opens the store and restores the engine from it. The only network call made
 * here is one `eth_blockNumber` on a first start with `fromBlock: "latest"`; listening and
 * watching begin with {@link PaymentServer.start}.
 */
export async function createPaymentServer(
  config: ServerConfig,
  options: PaymentServerOptions = {},
): Promise<PaymentServer> {
  const logger = options.logger ?? createLogger();
  const { network } = config;
  const chain = viemChain(network, config.rpcUrl);
  const client = options.publicClient ?? createChainClient({ url: config.rpcUrl, chain });

  // The store's fsync durations go to the metrics, which are built further down.
  let observeSync: ((seconds: number) => void) | undefined;
  const store: PaymentStore =
    options.store ??
    (config.database.url
      ? await openPgStore({ url: config.database.url })
      : openSqliteStore({
          path: config.database.path,
          durable: config.database.durable,
          fsync: config.database.fsync,
          onSync: (seconds) => observeSync?.(seconds),
        }));
  try {
    const engine = new VerificationEngine({
      payee: config.payee,
      tokens: config.tokens.map((token) => token.address),
      verifySignature: createVoucherSignatureVerifier(createVoucherHasher(network.chainId, config.contract)),
      withdrawSafetyMarginSec: config.withdrawSafetyMarginSec,
      minWithdrawDelay: config.minWithdrawDelay,
      loadUsedAmounts: (channelId, above) => store.loadVoucherAmounts(channelId, above),
      loadLedger: (channelId) => store.getLedger(channelId),
    });
    engine.restore(store.loadLedgers(), store.loadChannels());

    /** The only way a channel record enters the engine (see the module comment). */
    const applyRecord = (record: ChannelRecord): void => {
      if (engine.record(record.channelId) !== undefined) {
        engine.applyChannel(record);
        return;
      }
      // Not held yet: nothing was accepted on it in this process, so the store's ledger is the
      // whole truth (every accepted voucher was durable before it was served).
      const ledger = store.getLedger(record.channelId);
      engine.restore(ledger ? [ledger] : [], [record]);
    };

    const priceFeeds: PriceFeedReader[] = [];
    // Same key as the watcher's default, spelled out because the first-start decision needs it.
    const cursorKey = `watcher:${network.chainId}:${config.contract.toLowerCase()}:${config.payee.toLowerCase()}`;
    let fromBlock: bigint | undefined;
    if (config.fromBlock !== "latest") fromBlock = config.fromBlock;
    else if (store.getCursor(cursorKey) === undefined) {
      // First start without a deploy block: begin at the safe head instead of scanning all of
      // history; channels opened earlier are read on demand (ensureChannel). Later starts resume
      // from the stored cursor, so blocks passed while the server was down are never skipped.
      const head = await client.getBlockNumber();
      const confirmations = BigInt(config.confirmations);
      fromBlock = head > confirmations ? head - confirmations : 1n;
    }
    // Each feed-priced token's feed is read by the watcher on every poll, never on the request path.
    const accepted: AcceptedToken[] = config.tokens.map((settings) => {
      if (settings.rate.kind === "fixed") return { settings, source: fixedRate(settings.rate.rate) };
      const reader = new PriceFeedReader(client, settings.rate.feed);
      priceFeeds.push(reader);
      return { settings, source: feedRate(reader, settings.rate.maxAgeSec) };
    });
    const watcher = new ChannelWatcher({
      client,
      contract: config.contract,
      payee: config.payee,
      chainId: network.chainId,
      confirmations: config.confirmations,
      store,
      pollIntervalMs: config.pollIntervalMs,
      ...(fromBlock !== undefined ? { fromBlock } : {}),
      cursorKey,
      logger: logger.child({ component: "watcher" }),
      priceFeeds,
    });
    watcher.on("channel", applyRecord);
    // An EventEmitter "error" without a listener throws; the watcher retries on its own.
    watcher.on("error", (error) => logger.warn("chain watcher poll failed", { err: error }));

    // Channels the engine does not hold cost RPC calls to look up, and anyone can name any id:
    // cap the lookups in flight so a flood of made-up ids cannot queue unbounded RPC work. Past
    // the cap the voucher gets unknown_channel (402) and a real client simply retries.
    let lookups = 0;
    const fetchChannel = async (channelId: bigint): Promise<ChannelRecord | undefined> => {
      if (lookups >= MAX_CHANNEL_LOOKUPS) return undefined;
      lookups++;
      try {
        const record = await watcher.ensureChannel(channelId);
        // A channel of another payee comes back too, for the gate to answer wrong_payee; it never
        // enters the engine.
        if (record && isAddressEqual(record.payee, config.payee)) applyRecord(record);
        return record;
      } finally {
        lookups--;
      }
    };

    const receipts = new ReceiptSigner(config.secrets.payeeKey, network.chainId, config.contract);
    const metrics = new PaymentMetrics({
      ledgers: () => engine.ledgers(),
      watcherLagBlocks: () => watcher.lagBlocks,
    });
    observeSync = (seconds) => metrics.fsync.observe(seconds);
    // One sender for the relayer key: the relay and the exact settlement never race for a nonce.
    let relayerSender: TransactionSender | undefined;
    if (config.secrets.relayerKey) {
      const account = privateKeyToAccount(config.secrets.relayerKey);
      const walletClient = createWalletClient({ account, chain, transport: http(config.rpcUrl) });
      relayerSender = new TransactionSender({
        publicClient: client,
        walletClient,
        account,
        chain,
        confirmations: config.confirmations,
        pollIntervalMs: Math.min(config.pollIntervalMs, 1_000),
        timeoutMs: 120_000,
      });
    }

    let exact: ExactPayments | undefined;
    const authorizations = isAuthorizationStore(store) ? store : undefined;
    // An exact payment transfers the route's dollar price 1:1, so only a dollar first token takes it.
    const dollarToken = QuoteBook.isDollar(accepted[0]);
    if (config.exact && authorizations && dollarToken) {
      let settler: ExactSettler | undefined;
      if (config.exact.facilitatorUrl) settler = new FacilitatorExactSettler({ url: config.exact.facilitatorUrl });
      else if (relayerSender) settler = new LocalExactSettler({ publicClient: client, sender: relayerSender });
      if (settler) {
        exact = new ExactPayments({
          network: network.caip2,
          chainId: network.chainId,
          token: config.token,
          payee: config.payee,
          maxTimeoutSeconds: config.maxTimeoutSeconds,
          store: authorizations,
          settler,
          logger: logger.child({ component: "exact" }),
        });
      }
    } else if (config.exact && !dollarToken) {
      logger.warn("exact payments are not offered: the first token is not priced at one dollar");
    } else if (config.exact) {
      logger.warn("exact payments are not offered: the store does not record EIP-3009 authorizations");
    }

    // Only a server accepting more than its one dollar token prices routes in dollars per token.
    const quotes =
      config.tokens.length > 1 || !QuoteBook.isDollar(accepted[0])
        ? new QuoteBook({
            tokens: accepted,
            usdDecimals: config.token.decimals,
            privateKey: config.secrets.payeeKey,
            signer: receipts.address,
            chainId: network.chainId,
            contract: config.contract,
          })
        : undefined;
    // NOTE: the shared charge path of a PostgreSQL store prices every voucher in the one dollar
    // token; charging another token there would take the wrong amount.
    if (quotes && store.chargeVoucher) {
      throw new Error(
        "several tokens need the SQLite store for now: the shared PostgreSQL store charges in one dollar token (remove `tokens` or `database.url`)",
      );
    }
    const gate = new PaymentGate({
      engine,
      store,
      receipts,
      ...(quotes ? { quotes } : {}),
      terms: {
        network: network.caip2,
        contract: config.contract,
        asset: config.token.address,
        payee: config.payee,
        decimals: config.token.decimals,
        tokenName: config.token.name,
        tokenVersion: config.token.version,
        minDeposit: config.minDeposit,
        minWithdrawDelay: config.minWithdrawDelay,
        maxTimeoutSeconds: config.maxTimeoutSeconds,
        ...(config.relay ? { relay: config.relay.path } : {}),
      },
      fetchChannel,
      retryWindowMs: config.retryWindowMs,
      observer: metrics.observer,
      ...(exact ? { exact } : {}),
    });

    let relay: GaslessRelay | undefined;
    if (config.relay && relayerSender) {
      relay = new GaslessRelay({
        path: config.relay.path,
        publicClient: client,
        sender: relayerSender,
        chainId: network.chainId,
        contract: config.contract,
        payee: config.payee,
        tokens: config.tokens,
        minDeposit: config.minDeposit,
        minWithdrawDelay: config.minWithdrawDelay,
        // Prime the engine so the payer's first paid request needs no RPC round trip.
        onChannel: (channelId) => {
          fetchChannel(channelId).catch((error: unknown) =>
            logger.warn("could not load a relayed channel", { channelId, err: error }),
          );
        },
        logger: logger.child({ component: "relay" }),
        metrics,
      });
    }

    const health = (): HealthReport => {
      let storeOk = store.failure?.() === undefined;
      try {
        store.getCursor(watcher.cursorKey);
      } catch {
        storeOk = false;
      }
      const status = watcher.status();
      return {
        ok: storeOk && status.healthy,
        store: { ok: storeOk },
        chain: {
          network: network.name,
          chainId: network.chainId,
          healthy: status.healthy,
          lastSyncedBlock: status.lastSyncedBlock.toString(),
          latestBlock: status.latestBlock?.toString() ?? null,
          lagBlocks: status.lagBlocks ?? null,
          consecutiveFailures: status.consecutiveFailures,
          ...(status.lastError ? { lastError: status.lastError } : {}),
        },
      };
    };

    const proxy = new PaymentProxy({
      gate,
      routes: config.routes,
      decimals: config.token.decimals,
      upstream: config.upstream,
      unmatchedRoutes: config.unmatchedRoutes,
      maxHeaderBytes: config.maxHeaderBytes,
      upstreamTimeoutMs: config.upstreamTimeoutMs,
      forwardBeforeDurable: config.forwardBeforeDurable,
      ...(config.publicUrl ? { publicUrl: config.publicUrl } : {}),
      healthPath: config.healthPath,
      metricsPath: config.metricsPath,
      health,
      metrics,
      ...(relay ? { relay } : {}),
      paywallPage: new PaywallPage({
        logger: logger.child({ component: "paywall" }),
        onReport: () => metrics.cspReports.inc(),
      }),
      logger: logger.child({ component: "proxy" }),
    });

    /** Per channel: the claimed amount pruned up to, when it was first seen, and whether nothing is left below it. */
    const floors = new Map<bigint, { channelId: bigint; upTo: bigint; since: number; done: boolean }>();
    const pruneVouchers = (now = Date.now()): number => {
      const due: { channelId: bigint; upTo: bigint; since: number; done: boolean }[] = [];
      for (const { record } of engine.ledgers()) {
        if (record.claimedOnChain === 0n) continue;
        let entry = floors.get(record.channelId);
        if (entry === undefined || entry.upTo !== record.claimedOnChain) {
          entry = { channelId: record.channelId, upTo: record.claimedOnChain, since: now, done: false };
          floors.set(record.channelId, entry);
        }
        if (!entry.done) due.push(entry);
      }
      if (due.length === 0) return 0;
      const removed = store.pruneVouchers(due, now - config.retryWindowMs);
      // Every voucher below a floor was accepted before the floor was seen: once a retry window
      // has passed since then and a pass finds nothing, the channel is done until its next claim.
      removed.forEach((count, i) => {
        if (count === 0 && now - due[i].since > config.retryWindowMs) due[i].done = true;
      });
      return removed.reduce((a, b) => a + b, 0);
    };
    let pruneTimer: NodeJS.Timeout | undefined;
    let chainStarted = false;

    let stopping: Promise<void> | undefined;
    const server: PaymentServer = {
      config,
      gate,
      engine,
      store,
      watcher,
      receipts,
      metrics,
      proxy,
      relay,
      logger,
      health,
      lookupChannel: fetchChannel,
      pruneVouchers,
      async startChain() {
        await checkDeployment(client, { network, rpcUrl: config.rpcUrl, contract: config.contract });
        watcher.start();
        chainStarted = true;
        pruneTimer ??= setInterval(() => {
          try {
            const removed = pruneVouchers();
            if (removed > 0) logger.debug("pruned claimed vouchers", { removed });
          } catch (error) {
            logger.warn("pruning claimed vouchers failed; will retry", { err: error });
          }
        }, options.pruneIntervalMs ?? 60_000).unref();
      },
      async start() {
        await server.startChain();
        const address = await proxy.listen(config.listen.port, config.listen.host);
        logger.info("paychan server listening", {
          address: `http://${address.address}:${address.port}`,
          upstream: config.upstream.toString(),
          network: network.name,
          contract: config.contract,
          payee: config.payee,
          receiptSigner: receipts.address,
          relay: relay ? `${relay.path}/{open,topup}` : null,
          exact: exact ? (config.exact?.facilitatorUrl ?? "relayer key") : null,
          channels: [...engine.ledgers()].length,
        });
        return address;
      },
      stop() {
        stopping ??= (async () => {
          // A server that never started (its start-up check failed) has nothing to report.
          if (chainStarted) logger.info("paychan server stopping");
          try {
            await proxy.close(options.shutdownGraceMs ?? 10_000);
          } catch (error) {
            logger.warn("proxy did not close cleanly", { err: error });
          }
          await watcher.stop();
          clearInterval(pruneTimer);
          // Last: requests drained above may still have had writes in the group-commit queue.
          await store.close();
          if (chainStarted) logger.info("paychan server stopped");
        })();
        return stopping;
      },
    };
    return server;
  } catch (error) {
    void store.close();
    throw error;
  }
}
