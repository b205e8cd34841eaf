import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import {
  createWalletClient,
  http as httpTransport,
  parseAbi,
  type Abi,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { createChainClient } from "../../src/chain/client";
import { TransactionSender } from "../../src/chain/sender";
import { createPayingFetch, openChannel, termsFromOffer, type PayingFetch } from "../../src/client";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, type PaymentRequired } from "../../src/protocol/headers";
import { formatRate, parseRate } from "../../src/protocol/price";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { parseConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { Settler } from "../../src/settler/settler";
import { startHardhatNode, type HardhatNode } from "../../test/helpers/hardhatNode";
import { HARDHAT_KEYS } from "../../test/helpers/hardhatKeys";

/**
 * `npm run demo -- --tokens USDC,EURC`: a route priced in dollars, paid from one channel per
 * token on a local chain:
 *
 *  1. a `hardhat node` with PaymentChannels, mock USDC, mock EURC and a mock EUR / USD feed (1.08);
 *  2. the payment server accepting the listed tokens (USDC at one dollar, EURC at the feed's rate,
 *     read by its chain watcher) in front of a small API, with the gasless relay;
 *  3. a buyer holding both tokens and no ETH opens one channel per token through the relay and
 *     pays requests from each;
 *  4. the feed moves +5 % after the EURC quote was taken: the next EURC request is still charged
 *     at the quoted rate, while new 402s quote the new one;
 *  5. one batch claim settles every channel, and each token's claimed total is compared with what
 *     the server charged in it.
 *
 * Its last stdout line is `{"tokens":{"USDC":{"charged":"..","claimed":".."},...},"quotedRateHeld":true}`
 * (atomic units); it exits non-zero when a token's claimed total differs from its charged total.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const FEED_KEY: Hex = HARDHAT_KEYS[4];
const DEPOSIT = 5_000_000n;
const REQUESTS_PER_TOKEN = 50;
const KNOWN = ["USDC", "EURC"] as const;
type Symbol = (typeof KNOWN)[number];

/** The symbols of `--tokens USDC,EURC`. */
export function parseTokens(value: string): Symbol[] {
  const symbols = value.split(",").map((s) => s.trim().toUpperCase());
  for (const symbol of symbols) {
    if (!(KNOWN as readonly string[]).includes(symbol)) {
      throw new Error(`--tokens: unknown token ${symbol}; use ${KNOWN.join(",")}`);
    }
  }
  if (symbols.length === 0 || new Set(symbols).size !== symbols.length)
    throw new Error("--tokens: list each token once");
  return symbols as Symbol[];
}

export async function runTokensDemo(symbols: readonly Symbol[]): Promise<number> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-demo-tokens-"));
  let node: HardhatNode | undefined;
  let api: http.Server | undefined;
  let server: PaymentServer | undefined;
  try {
    log(`paychan demo: a route priced in dollars, paid in ${symbols.join(" and ")}`);
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC, MockEURC, MockEurUsdFeed: feed, PaymentChannels: contract } = node.deployments!;
    const address: Record<Symbol, Address> = { USDC: MockUSDC, EURC: MockEURC };
    const client: PublicClient = createChainClient({ url: node.url });
    const send = async (to: Address, abi: Abi, functionName: string, args: unknown[], key: Hex) => {
      const account = privateKeyToAccount(key);
      const wallet = createWalletClient({ account, chain: hardhat, transport: httpTransport(node!.url) });
      await client.waitForTransactionReceipt({
        hash: await wallet.writeContract({ address: to, abi, functionName, args }),
      });
    };

    api = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ city: "Lisbon", tempC: 19 }));
      });
    });
    await new Promise<void>((resolve) => api!.listen(0, "127.0.0.1", resolve));
    const settings = {
      USDC: { address: MockUSDC, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" },
      EURC: {
        address: MockEURC,
        symbol: "EURC",
        decimals: 6,
        name: "EURC",
        version: "2",
        rate: { feed, maxAgeSec: 600 },
      },
    };
    const config = parseConfig(
      {
        upstream: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract,
        tokens: symbols.map((symbol) => settings[symbol]),
        routes: { "GET /weather": "$0.001" },
        minWithdrawDelay: 3600,
        pollIntervalMs: 200,
        confirmations: 0,
        database: { path: path.join(dir, "paychan.db") },
      },
      { env: { [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY } },
    );
    server = await createPaymentServer(config, { logger: createLogger({ level: "warn" }) });
    const baseUrl = `http://127.0.0.1:${(await server.start()).port}`;
    const terms = async (): Promise<PaymentRequired> => {
      const response = await fetch(`${baseUrl}/weather`);
      await response.arrayBuffer();
      return decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER)!);
    };
    const offerOf = (required: PaymentRequired, symbol: Symbol) =>
      required.accepts.find((o) => o.asset.toLowerCase() === address[symbol].toLowerCase());
    /** Waits for the server's watcher to have read the feed: EURC offered at `amount`. */
    const untilEurcAt = async (amount: string) => {
      for (const deadline = Date.now() + 30_000; offerOf(await terms(), "EURC")?.amount !== amount;) {
        if (Date.now() > deadline) throw new Error(`EURC was never offered at ${amount}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    };
    if (symbols.includes("EURC")) await untilEurcAt("926");
    for (const offer of (await terms()).accepts) {
      const quote = offer.extra.quote ? ` at ${formatRate(BigInt(offer.extra.quote.rate))} $/token (signed quote)` : "";
      const symbol = symbols.find((s) => address[s].toLowerCase() === offer.asset.toLowerCase());
      log(`  402 offers ${offer.amount} atomic units of ${symbol}${quote}`);
    }

    const buyer = privateKeyToAccount(generatePrivateKey());
    const session = privateKeyToAccount(generatePrivateKey());
    const pays = {} as Record<Symbol, PayingFetch>;
    const channels = {} as Record<Symbol, bigint>;
    for (const symbol of symbols) {
      await send(address[symbol], usdcAbi as Abi, "mint", [buyer.address, 20_000_000n], MINTER_KEY);
      pays[symbol] = createPayingFetch(fetch, {
        sessionAccount: session,
        asset: address[symbol],
        maxPerRequest: 10_000n,
        maxTotal: 1_000_000n,
        channel: async (offer, url) => {
          const opened = await openChannel({
            terms: termsFromOffer(offer, url),
            funding: { kind: "relay", payer: buyer },
            signer: session.address,
            amount: DEPOSIT,
            withdrawDelay: 3600,
          });
          channels[symbol] = opened.channelId;
          log(`  ${symbol} channel 0x${opened.channelId.toString(16)} opened gaslessly (tx ${opened.txHash})`);
          return opened;
        },
      });
    }

    for (const symbol of symbols) {
      let charged = 0n;
      for (let i = 0; i < REQUESTS_PER_TOKEN; i++) {
        const response = await pays[symbol](`${baseUrl}/weather?i=${i}`);
        await response.arrayBuffer();
        if (response.status !== 200 || !response.payment?.receiptValid)
          throw new Error(`${symbol} request ${i}: ${response.status}`);
        charged += response.payment.charge;
      }
      log(`  ${REQUESTS_PER_TOKEN} requests paid in ${symbol}: ${charged} atomic units`);
    }

    let quotedRateHeld = true;
    if (symbols.includes("EURC")) {
      // The EURC payer holds the offer (and quote) of its first 402; the rate now moves +5 %.
      await send(feed, parseAbi(["function setAnswer(int256 answer)"]), "setAnswer", [113_400_000n], FEED_KEY);
      await untilEurcAt("882");
      log("  EUR / USD moved 1.08 -> 1.134 (+5 %); new 402s offer 882 EURC units");
      const response = await pays.EURC(`${baseUrl}/weather?after=move`);
      await response.arrayBuffer();
      const payment = response.payment;
      quotedRateHeld = response.status === 200 && payment?.charge === 926n && payment.rate === parseRate("1.08");
      log(
        `  the next EURC request, paid under the earlier quote: charged ${payment?.charge} at ` +
          `${payment?.rate === undefined ? "?" : formatRate(payment.rate)} $/EURC`,
      );
    }

    const payee = privateKeyToAccount(PAYEE_KEY);
    const settler = new Settler({
      publicClient: client,
      sender: new TransactionSender({
        publicClient: client,
        walletClient: createWalletClient({ account: payee, chain: hardhat, transport: httpTransport(node.url) }),
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
      onError: (cause, error) => log(`  settler ${cause}: ${String(error)}`),
    });
    const reports = await settler.runOnce();
    log(`  settlement: ${reports.length} claimBatch tx for ${reports.reduce((n, r) => n + r.channels, 0)} channels`);

    const tokens: Record<string, { charged: string; claimed: string }> = {};
    let ok = quotedRateHeld;
    for (const symbol of symbols) {
      const charged = server.store.getLedger(channels[symbol])?.chargedTotal ?? 0n;
      const onChain = await client.readContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "getChannel",
        args: [channels[symbol]],
      });
      tokens[symbol] = { charged: charged.toString(), claimed: onChain.claimed.toString() };
      ok &&= onChain.claimed === charged;
      log(`  ${symbol}: charged ${charged}, claimed on-chain ${onChain.claimed}`);
    }
    log(ok ? "  OK: every token's claimed total equals its charged total" : "  MISMATCH");
    log(JSON.stringify({ tokens, quotedRateHeld }));
    return ok ? 0 : 1;
  } finally {
    await server?.stop().catch(() => undefined);
    api?.closeAllConnections();
    await new Promise<void>((resolve) => (api ? api.close(() => resolve()) : resolve()));
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
