import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createPublicClient, createWalletClient, http as httpTransport, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../src/chain/abi";
import { createPayingFetch, fileStateStore, openChannel, termsFromOffer, type PaidResponse } from "../src/client";
import { formatDollars } from "../src/protocol/price";
import { createPaymentServer, type PaymentServer } from "../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../src/shared/config";
import { createLogger } from "../src/shared/log";
import { TransactionSender } from "../src/chain/sender";
import { Settler, type BatchReport } from "../src/settler/settler";
import { startHardhatNode, type HardhatNode } from "../test/helpers/hardhatNode";
import { HARDHAT_KEYS } from "../test/helpers/hardhatKeys";
import { parseTokens, runTokensDemo } from "./demo/tokens";

/**
 * paychan end to end on a local chain, in one command (`npm run demo`):
 *
 *  1. a `hardhat node` child on 127.0.0.1 (own process group), contracts + mock USDC deployed;
 *  2. the payment server (SQLite in a temp dir) in front of a small sample API, with the relay;
 *  3. a buyer holding mock USDC and no ETH opens a channel gaslessly through the relay, from the
 *     paying fetch's channel policy, with a generated session key signing the vouchers;
 *  4. ≥ 200 paid requests, some sequential and bursts of 32 concurrent ones;
 *  5. one batch settlement with the settler (payee key), then the chain is compared with the ledger.
 *
 * Prints a summary, then as its last stdout line one JSON object with the figures. Exits non-zero
 * when the amount claimed on-chain differs from what the server charged.
 *
 * `npm run demo -- --tokens USDC,EURC` runs scripts/demo/tokens.ts instead: dollar prices paid in
 * several tokens at quoted rates.
 */

// Roles on the local chain (Hardhat development accounts).
const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const PRICE = 1_000n; // $0.001
const DEPOSIT = 5_000_000n; // $5
const SEQUENTIAL_BEFORE = 40;
const BURSTS = 4;
const BURST_SIZE = 32;
const SEQUENTIAL_AFTER = 40;

/** The sample API behind the paywall. */
async function startSampleApi(): Promise<http.Server> {
  const cities = ["Lisbon", "Porto", "Faro", "Braga", "Coimbra"];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://api");
      const city = url.searchParams.get("city") ?? cities[Math.floor(Math.random() * cities.length)];
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ city, tempC: 15 + (city.length % 10), at: new Date().toISOString() }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function main(): Promise<number> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const startedAt = performance.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-demo-"));
  let node: HardhatNode | undefined;
  let api: http.Server | undefined;
  let server: PaymentServer | undefined;
  try {
    log("paychan demo");
    log("  starting a hardhat node and deploying PaymentChannels + mock USDC ...");
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
    const publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    log(`  chain ${node.url}  contract ${contract}  token ${usdc}`);

    api = await startSampleApi();
    const configFile = path.join(dir, "paychan.config.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        upstream: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract,
        token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
        routes: { "GET /weather": "$0.001", "GET /health": null },
        minDeposit: "$1",
        minWithdrawDelay: 3600,
        pollIntervalMs: 200,
        database: { path: path.join(dir, "paychan.db"), durable: true },
      }),
    );
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };
    server = await createPaymentServer(loadConfig(configFile, env), { logger: createLogger({ level: "warn" }) });
    const baseUrl = `http://127.0.0.1:${(await server.start()).port}`;
    log(`  payment server ${baseUrl} (SQLite in ${dir}), GET /weather costs ${formatDollars(PRICE, 6)}`);

    // The buyer: mock USDC, no ETH. A separate, generated session key signs the vouchers.
    const buyer = privateKeyToAccount(generatePrivateKey());
    const session = privateKeyToAccount(generatePrivateKey());
    const minter = privateKeyToAccount(MINTER_KEY);
    const minterWallet = createWalletClient({ account: minter, chain: hardhat, transport: httpTransport(node.url) });
    const mint = await minterWallet.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [buyer.address, 20_000_000n],
    });
    await publicClient.waitForTransactionReceipt({ hash: mint });
    log(
      `  buyer ${buyer.address}: ${formatDollars(20_000_000n, 6)} USDC, ${await publicClient.getBalance({ address: buyer.address })} wei ETH`,
    );

    let openTx: Hex | undefined;
    const latencies: number[] = [];
    const sequentialLatencies: number[] = [];
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
      store: fileStateStore(path.join(dir, "client-state.json")),
      channel: async (offer, url) => {
        const opened = await openChannel({
          terms: termsFromOffer(offer, url),
          funding: { kind: "relay", payer: buyer },
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        openTx = opened.txHash;
        log(`  channel 0x${opened.channelId.toString(16)} opened gaslessly via the relay (tx ${opened.txHash})`);
        return opened.channelId;
      },
    });
    let paid = 0;
    let chargedByReceipts = 0n;
    const one = async (i: number, sequential = false): Promise<PaidResponse> => {
      const t0 = performance.now();
      const response = await pay(`${baseUrl}/weather?req=${i}`);
      await response.arrayBuffer();
      if (response.status !== 200 || !response.payment?.receiptValid) {
        throw new Error(`request ${i}: status ${response.status}`);
      }
      latencies.push(performance.now() - t0);
      if (sequential) sequentialLatencies.push(performance.now() - t0);
      paid++;
      chargedByReceipts += response.payment.charge;
      return response;
    };

    log("  paying requests ...");
    const requestsStarted = performance.now();
    let i = 0;
    for (let k = 0; k < SEQUENTIAL_BEFORE; k++) await one(i++, k > 0);
    let concurrent = 0;
    for (let b = 0; b < BURSTS; b++) {
      await Promise.all(Array.from({ length: BURST_SIZE }, () => one(i++)));
      concurrent += BURST_SIZE;
    }
    for (let k = 0; k < SEQUENTIAL_AFTER; k++) await one(i++, true);
    const requestsMs = performance.now() - requestsStarted;
    const first = latencies[0];
    latencies.shift(); // the first request includes the channel open; keep it out of the latency figures
    log(
      `  ${paid} paid requests (${concurrent} in bursts of ${BURST_SIZE}) in ${(requestsMs / 1000).toFixed(2)} s; ` +
        `first (with open) ${first.toFixed(0)} ms, p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms ` +
        `(one at a time: p50 ${percentile(sequentialLatencies, 50).toFixed(1)} ms; in a burst of ${BURST_SIZE}: ` +
        `each waits for the others)`,
    );

    const channelId = BigInt(Object.values(fileStateStore(path.join(dir, "client-state.json")).load().offers)[0]);
    const ledger = server.store.getLedger(channelId);
    if (!ledger) throw new Error("the server has no ledger for the channel");
    log(
      `  server ledger: charged ${formatDollars(ledger.chargedTotal, 6)}, best voucher ${formatDollars(ledger.highestAmount, 6)}; receipts add up to ${formatDollars(chargedByReceipts, 6)}`,
    );

    // Batch settlement with the payee's key.
    const payee = privateKeyToAccount(PAYEE_KEY);
    const sender = new TransactionSender({
      publicClient,
      walletClient: createWalletClient({ account: payee, chain: hardhat, transport: httpTransport(node.url) }),
      account: payee,
      chain: hardhat,
      confirmations: 0,
      pollIntervalMs: 100,
      timeoutMs: 30_000,
    });
    const settler = new Settler({
      publicClient,
      sender,
      store: server.store,
      contract,
      policy: { minUnclaimed: 0n, maxAgeSec: 0, maxBatchSize: 50 },
      opStack: false,
      intervalSec: 3600,
      onError: (cause, error) => log(`  settler ${cause}: ${(error as Error).message ?? String(error)}`),
    });
    const deadline = Date.now() + 20_000;
    while (!settler.candidates().some((c) => c.channelId === channelId)) {
      if (Date.now() > deadline) throw new Error("the channel never became a claim candidate");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reports: BatchReport[] = await settler.runOnce();
    const settlementGas = reports.reduce((sum, r) => sum + r.gasUsed, 0n);
    const onChain = await publicClient.readContract({
      address: contract,
      abi: paymentChannelsAbi,
      functionName: "getChannel",
      args: [channelId],
    });
    const openGas = openTx ? (await publicClient.getTransactionReceipt({ hash: openTx })).gasUsed : 0n;
    log(
      `  settlement: ${reports.length} claimBatch tx, ${settlementGas} gas; claimed on-chain ${formatDollars(onChain.claimed, 6)}`,
    );
    log(
      `  on-chain gas: open ${openGas} + settlement ${settlementGas} = ${openGas + settlementGas} for ${paid} paid requests`,
    );
    log(`  buyer ETH afterwards: ${await publicClient.getBalance({ address: buyer.address })} wei`);
    const ok = onChain.claimed === ledger.chargedTotal;
    log(ok ? "  OK: claimed on-chain == charged" : "  MISMATCH: claimed on-chain != charged");
    log(`  total ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
    const summary = {
      paidRequests: paid,
      concurrentRequests: concurrent,
      chargedTotal: ledger.chargedTotal.toString(),
      claimedOnChain: onChain.claimed.toString(),
      settlementTxs: reports.length,
      gasPerPaidRequest: Math.round(Number(openGas + settlementGas) / paid),
      p50PaidLatencyMs: Math.round(percentile(latencies, 50) * 10) / 10,
    };
    log(JSON.stringify(summary));
    return ok ? 0 : 1;
  } finally {
    await server?.stop().catch(() => undefined);
    if (api) {
      api.closeAllConnections();
      await new Promise<void>((resolve) => api!.close(() => resolve()));
    }
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `--tokens USDC,EURC` runs the multi-token demo instead (scripts/demo/tokens.ts). */
function tokensArgument(argv: readonly string[]): string | undefined {
  const at = argv.findIndex((arg) => arg === "--tokens" || arg.startsWith("--tokens="));
  if (at < 0) return undefined;
  return argv[at].includes("=") ? argv[at].slice("--tokens=".length) : (argv[at + 1] ?? "");
}

const tokens = tokensArgument(process.argv.slice(2));
(tokens === undefined ? main() : runTokensDemo(parseTokens(tokens))).then(
  (code) => {
    process.exitCode = code;
    // Idle keep-alive sockets may hold the loop open a moment; leave once output is flushed.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
