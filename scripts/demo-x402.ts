import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import express from "express";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../src/chain/abi";
import { TransactionSender } from "../src/chain/sender";
import { createPayingFetch, openChannel, termsFromOffer } from "../src/client";
import { createChannelScheme } from "../src/client/x402";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER } from "../src/protocol/headers";
import { formatDollars } from "../src/protocol/price";
import { createPaymentServer, type PaymentServer } from "../src/server/app";
import { x402Channel } from "../src/server/x402/x402Channel";
import { Settler } from "../src/settler/settler";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../src/shared/config";
import { createLogger } from "../src/shared/log";
import { startHardhatNode, type HardhatNode } from "../test/helpers/hardhatNode";
import { HARDHAT_KEYS } from "../test/helpers/hardhatKeys";

/**
 * paychan and the official x402 SDK together on a local chain (`npm run demo:x402`):
 *
 *  1. a `hardhat node` child on 127.0.0.1, contracts + mock USDC deployed; a paychan server (the
 *     reverse proxy, SQLite in a temp dir) in front of a small API, offering `channel` and `exact`;
 *  2. the unmodified @x402/fetch client with paychan's client plug-in (`paychan/x402`) pays 100
 *     requests (two bursts of 32 concurrent ones among them) through a channel it opens itself,
 *     gaslessly through the server's relay;
 *  3. an @x402/fetch client with only @x402/evm's `exact` scheme pays 10 requests through the
 *     exact fallback, and a replay of one of its payments is refused;
 *  4. an @x402/express app with paychan's server plug-in (`x402Channel`) is paid by paychan's
 *     own client;
 *  5. the settler claims every channel in one batch, and the chain is compared with the ledgers.
 *
 * The last stdout line is one JSON object:
 * {"channelPaid","channelConcurrent","exactPaid","exactReplayRefused","expressPaid","claimedOnChain","chargedTotal"};
 * the exit code is non-zero when the amount claimed on-chain differs from what was charged.
 */

// Roles on the local chain (Hardhat development accounts).
const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const EXACT_BUYER_KEY: Hex = HARDHAT_KEYS[4];
const EXPRESS_BUYER_KEY: Hex = HARDHAT_KEYS[5];
const NETWORK = "eip155:31337";
const CHANNEL_REQUESTS = 100;
const CHANNEL_BURSTS = 2;
const CONCURRENCY = 32;
const EXACT_REQUESTS = 10;
const EXPRESS_REQUESTS = 20;
const DEPOSIT = 2_000_000n; // $2

/** The demo's figures, as printed on its last line. */
export interface DemoX402Summary {
  readonly channelPaid: number;
  readonly channelConcurrent: number;
  readonly exactPaid: number;
  readonly exactReplayRefused: boolean;
  readonly expressPaid: number;
  readonly claimedOnChain: string;
  readonly chargedTotal: string;
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: http.Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Runs `tasks` with at most `limit` in flight; answers the most seen in flight at once. */
async function runConcurrently(tasks: (() => Promise<void>)[], limit: number): Promise<number> {
  let next = 0;
  let inFlight = 0;
  let most = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const task = tasks[next++];
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await task();
      } finally {
        inFlight--;
      }
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return most;
}

/** The whole demo; `log` gets the human-readable lines. */
export async function runDemoX402(log: (line: string) => void): Promise<DemoX402Summary> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-demo-x402-"));
  let node: HardhatNode | undefined;
  let api: http.Server | undefined;
  let shop: http.Server | undefined;
  let server: PaymentServer | undefined;
  try {
    log("paychan x402 demo");
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
    const transport = httpTransport(node.url);
    const publicClient = createPublicClient({ chain: hardhat, transport }) as PublicClient;
    log(`  chain ${node.url}  contract ${contract}  token ${usdc}`);
    const minter = createWalletClient({ account: privateKeyToAccount(MINTER_KEY), chain: hardhat, transport });
    const mint = async (to: Address, amount: bigint) =>
      publicClient.waitForTransactionReceipt({
        hash: await minter.writeContract({ address: usdc, abi: usdcAbi, functionName: "mint", args: [to, amount] }),
      });

    api = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ city: "Lisbon", tempC: 21, path: req.url }));
      });
    });
    const configFile = path.join(dir, "paychan.config.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        upstream: await listen(api),
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract,
        token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
        routes: { "GET /weather": "$0.001" },
        minDeposit: "$1",
        minWithdrawDelay: 3600,
        pollIntervalMs: 200,
        confirmations: 0,
        database: { path: path.join(dir, "paychan.db"), durable: true },
      }),
    );
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };
    server = await createPaymentServer(loadConfig(configFile, env), { logger: createLogger({ level: "warn" }) });
    const proxyUrl = `http://127.0.0.1:${(await server.start()).port}`;
    log(`  paychan server ${proxyUrl}: GET /weather costs $0.001, paid by channel or exact`);

    // 2. @x402/fetch with paychan's client plug-in.
    const channelBuyer = privateKeyToAccount(generatePrivateKey());
    await mint(channelBuyer.address, 10_000_000n);
    // The buyer holds mock USDC and no ETH: the plug-in opens its channel through the relay.
    const channelScheme = createChannelScheme({
      sessionAccount: privateKeyToAccount(generatePrivateKey()),
      funding: { kind: "relay", payer: channelBuyer },
      deposit: DEPOSIT,
      // The mock token stands for USDC here, so x402's dollar spend caps apply to it.
      defaultAssets: [{ network: NETWORK, asset: usdc, decimals: 6, symbol: "USDC" }],
    });
    const channelFetch = wrapFetchWithPayment(fetch, new x402Client().register(NETWORK, channelScheme));
    let channelPaid = 0;
    const channelRequest = (i: number) => async () => {
      const response = await channelFetch(`${proxyUrl}/weather?req=${i}`);
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`channel request ${i}: status ${response.status}`);
      channelPaid++;
    };
    // Vouchers signed while requests overlap may run ahead of the charges (each covers what is
    // charged and in flight); the one-at-a-time requests at the end bring the best voucher back
    // to the charged total, so that a claim collects exactly what was charged.
    let i = 0;
    await channelRequest(i++)(); // opens the channel
    let channelConcurrent = 0;
    for (let burst = 0; burst < CHANNEL_BURSTS; burst++) {
      const tasks = Array.from({ length: CONCURRENCY }, () => channelRequest(i++));
      channelConcurrent = Math.max(channelConcurrent, await runConcurrently(tasks, CONCURRENCY));
    }
    while (i < CHANNEL_REQUESTS) await channelRequest(i++)();
    log(
      `  @x402/fetch + paychan/x402: ${channelPaid} paid requests, in ${CHANNEL_BURSTS} bursts of ${channelConcurrent}`,
    );

    // 3. @x402/fetch with only the exact scheme: the fallback.
    const exactBuyer = privateKeyToAccount(EXACT_BUYER_KEY);
    await mint(exactBuyer.address, 1_000_000n);
    const sent: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const header = request.headers.get(PAYMENT_SIGNATURE_HEADER);
      if (header) sent.push(header);
      return fetch(request);
    };
    const exactFetch = wrapFetchWithPayment(
      recording,
      x402Client.fromConfig({
        schemes: [{ network: NETWORK, client: new ExactEvmScheme(exactBuyer) }],
        // The mock token is no default x402 asset: the buyer allows it, as a real buyer would USDC.
        spendControls: { allowedAssets: [{ network: NETWORK, asset: usdc }] },
      }),
    );
    let exactPaid = 0;
    for (let i = 0; i < EXACT_REQUESTS; i++) {
      const response = await exactFetch(`${proxyUrl}/weather?exact=${i}`);
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`exact request ${i}: status ${response.status}`);
      exactPaid++;
    }
    const replay = await fetch(`${proxyUrl}/weather?exact=0`, { headers: { [PAYMENT_SIGNATURE_HEADER]: sent[0] } });
    await replay.arrayBuffer();
    const replayError = replay.headers.has(PAYMENT_REQUIRED_HEADER)
      ? decodeHeader<{ error?: string }>(replay.headers.get(PAYMENT_REQUIRED_HEADER)!).error
      : undefined;
    const exactReplayRefused = replay.status === 402 && replayError === "authorization_reused";
    log(
      `  @x402/fetch with exact only: ${exactPaid} paid requests (one transfer each); a replay answered ${replay.status} ${replayError ?? ""}`,
    );

    // 4. An @x402/express app with paychan's server plug-in, paid by paychan's client.
    const channel = x402Channel(server);
    const app = express();
    app.use(
      paymentMiddleware(
        {
          "GET /forecast": {
            accepts: { scheme: "channel", network: channel.network, payTo: channel.payTo, price: "$0.002" },
            description: "Three-day forecast",
          },
        },
        new x402ResourceServer(channel.facilitator).register(channel.network, channel.scheme),
      ),
    );
    app.get("/forecast", (_req, res) => {
      res.json({ days: ["sun", "sun", "rain"] });
    });
    shop = http.createServer(app);
    const shopUrl = await listen(shop);
    const expressBuyer = privateKeyToAccount(EXPRESS_BUYER_KEY);
    await mint(expressBuyer.address, 10_000_000n);
    const session = privateKeyToAccount(generatePrivateKey());
    let expressChannel: bigint | undefined;
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
      channel: async (offer, url) => {
        const opened = await openChannel({
          terms: termsFromOffer(offer, url),
          funding: {
            kind: "approve",
            publicClient,
            wallet: createWalletClient({ account: expressBuyer, chain: hardhat, transport }),
          },
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        expressChannel = opened.channelId;
        return opened.channelId;
      },
    });
    let expressPaid = 0;
    const expressRequest = (k: number) => async () => {
      const response = await pay(`${shopUrl}/forecast?req=${k}`);
      await response.arrayBuffer();
      if (response.status !== 200 || !response.payment?.receiptValid) {
        throw new Error(`express request ${k}: status ${response.status}`);
      }
      expressPaid++;
    };
    // One request opens the channel, a burst runs concurrently, the rest one at a time (see above).
    let k = 0;
    await expressRequest(k++)();
    await runConcurrently(
      Array.from({ length: EXPRESS_REQUESTS / 2 }, () => expressRequest(k++)),
      EXPRESS_REQUESTS / 2,
    );
    while (k < EXPRESS_REQUESTS) await expressRequest(k++)();
    log(`  @x402/express + x402Channel: ${expressPaid} requests paid by paychan's client`);

    // 5. One batch claim for every channel, then the chain against the ledgers.
    const channels = [...server.engine.ledgers()].map((l) => l.record.channelId);
    if (expressChannel === undefined || !channels.includes(expressChannel)) {
      throw new Error("the express app's channel is unknown to the server");
    }
    const payee = privateKeyToAccount(PAYEE_KEY);
    const settler = new Settler({
      publicClient,
      sender: new TransactionSender({
        publicClient,
        walletClient: createWalletClient({ account: payee, chain: hardhat, transport }),
        account: payee,
        chain: hardhat,
        confirmations: 0,
        pollIntervalMs: 100,
        timeoutMs: 30_000,
      }),
      store: server.store,
      contract,
      policy: { minUnclaimed: 0n, maxAgeSec: 0, maxBatchSize: 50 },
      opStack: false,
      intervalSec: 3600,
    });
    const deadline = Date.now() + 20_000;
    while (settler.candidates().length < channels.length) {
      if (Date.now() > deadline) throw new Error("not every channel became a claim candidate");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const reports = await settler.runOnce();
    let claimedOnChain = 0n;
    let chargedTotal = 0n;
    for (const channelId of channels) {
      const onChain = await publicClient.readContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "getChannel",
        args: [channelId],
      });
      claimedOnChain += onChain.claimed;
      chargedTotal += server.store.getLedger(channelId)?.chargedTotal ?? 0n;
    }
    log(
      `  settlement: ${reports.length} claimBatch tx for ${channels.length} channels; claimed ${formatDollars(claimedOnChain, 6)}, charged ${formatDollars(chargedTotal, 6)}`,
    );
    return {
      channelPaid,
      channelConcurrent,
      exactPaid,
      exactReplayRefused,
      expressPaid,
      claimedOnChain: claimedOnChain.toString(),
      chargedTotal: chargedTotal.toString(),
    };
  } finally {
    await close(shop);
    await server?.stop().catch(() => undefined);
    await close(api);
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  runDemoX402(log).then(
    (summary) => {
      const ok = summary.claimedOnChain === summary.chargedTotal;
      log(ok ? "  OK: claimed on-chain == charged" : "  MISMATCH: claimed on-chain != charged");
      log(JSON.stringify(summary));
      process.exitCode = ok ? 0 : 1;
      // Idle keep-alive sockets may hold the loop open a moment; leave once output is flushed.
      setTimeout(() => process.exit(ok ? 0 : 1), 200).unref();
    },
    (error: unknown) => {
      process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
