import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, termsFromOffer, type PayingFetchOptions } from "../src/client";
import { createPayingMcpClient } from "../src/mcp";
import { formatDollars } from "../src/protocol/price";
import { startSettler } from "../src/settler/main";
import { createLogger, silentLogger } from "../src/shared/log";
import { startChainServer, type ChainServer } from "../test/helpers/chainServer";
import { connectMcpClient, payMcpCalls, startPaidMcpServer, type PaidMcpServer } from "./demo/mcpCalls";

/**
 * Paid MCP tool calls on a local chain (`npm run demo:mcp`):
 *
 *  1. a `hardhat node` child on 127.0.0.1, contracts + mock USDC deployed; a paychan server (its
 *     gate and gasless relay, SQLite in a temp dir) behind an MCP server of the official SDK
 *     (streamable HTTP) whose `weather` tool costs $0.001;
 *  2. a buyer holding mock USDC and no ETH opens a channel through the relay and makes 50 paid
 *     `weather` calls with the SDK's Client and `createPayingMcpClient`, 10 at a time;
 *  3. the settler claims the channel, and the chain is compared with what the receipts charged;
 *  4. the latency a paid call adds: sequential calls of the free `ping` tool and of `weather`
 *     (another buyer and channel), p50/p99.
 *
 * The last stdout line is one JSON object {"mcpPaidCalls","claimedOnChain","chargedTotal"}; the
 * exit code is non-zero when the amount claimed on-chain differs from what was charged.
 */

const CALLS = 50;
const CONCURRENCY = 10;
const DEPOSIT = 2_000_000n; // $2

export interface DemoMcpSummary {
  readonly mcpPaidCalls: number;
  readonly claimedOnChain: string;
  readonly chargedTotal: string;
}

/** Per-call latency of a free and of a paid tool call, milliseconds. */
export interface McpLatency {
  readonly calls: number;
  readonly freeP50: number;
  readonly freeP99: number;
  readonly paidP50: number;
  readonly paidP99: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function timed(calls: number, call: (i: number) => Promise<void>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < calls; i++) {
    const started = process.hrtime.bigint();
    await call(i);
    ms.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return ms.sort((a, b) => a - b);
}

/** A buyer's paying options: a fresh session key, its channel opened through the MCP server's relay. */
function buyerOptions(payer: ReturnType<typeof privateKeyToAccount>, mcpUrl: string): PayingFetchOptions {
  const session = privateKeyToAccount(generatePrivateKey());
  return {
    sessionAccount: session,
    maxPerRequest: 10_000n,
    maxTotal: DEPOSIT,
    channel: async (offer) =>
      openChannel({
        terms: termsFromOffer(offer, mcpUrl),
        funding: { kind: "relay", payer },
        signer: session.address,
        amount: DEPOSIT,
        withdrawDelay: 86_400,
      }),
  };
}

/**
 * Sequential free and paid calls through one MCP connection (after `warmup` of each): what a paid
 * call costs over a free one, the channel already open and the offer known.
 */
export async function measureMcpLatency(url: string, paying: PayingFetchOptions, calls: number): Promise<McpLatency> {
  const client = await connectMcpClient(url);
  try {
    const buyer = createPayingMcpClient(client, paying);
    const warmup = 20;
    const free = async (i: number) => {
      const result = await client.callTool({ name: "ping", arguments: { city: `c${i}` } });
      if (result.isError) throw new Error("ping failed");
    };
    const paid = async (i: number) => {
      const { payment } = await buyer.callTool("weather", { city: `c${i}` });
      if (!payment) throw new Error("weather was not paid");
    };
    await timed(warmup, free);
    await timed(warmup, paid);
    const freeMs = await timed(calls, free);
    const paidMs = await timed(calls, paid);
    return {
      calls,
      freeP50: percentile(freeMs, 50),
      freeP99: percentile(freeMs, 99),
      paidP50: percentile(paidMs, 50),
      paidP99: percentile(paidMs, 99),
    };
  } finally {
    await client.close();
  }
}

/** The whole demo; `log` gets the human-readable lines. `latencyCalls` 0 skips step 4. */
export async function runDemoMcp(
  log: (line: string) => void,
  latencyCalls = 300,
): Promise<DemoMcpSummary & { readonly latency?: McpLatency }> {
  let chain: ChainServer | undefined;
  let mcp: PaidMcpServer | undefined;
  try {
    log("paychan MCP demo");
    chain = await startChainServer({ logger: createLogger({ level: "warn" }) });
    const { server } = chain;
    log(`  chain ${chain.node.url}  contract ${chain.contract}  token ${chain.token}`);
    mcp = await startPaidMcpServer({ gate: server.gate, relay: server.relay });
    log(`  MCP server ${mcp.url}: tool weather costs $0.001, ping is free`);

    const payer = privateKeyToAccount(generatePrivateKey());
    await chain.mint(payer.address, 10_000_000n);
    const { paid, charged, channelId } = await payMcpCalls({
      url: mcp.url,
      n: CALLS,
      concurrency: CONCURRENCY,
      ...buyerOptions(payer, mcp.url),
    });
    if (channelId === undefined) throw new Error("no call was paid");
    log(`  ${paid} paid MCP calls, ${CONCURRENCY} at a time, charged ${formatDollars(charged, 6)}`);

    const settler = await startSettler(chain.configFile, { env: chain.env, logger: silentLogger });
    let claimedOnChain = 0n;
    try {
      const deadline = Date.now() + 60_000;
      while (claimedOnChain < charged && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        claimedOnChain = await chain.claimed(channelId);
      }
    } finally {
      await settler.stop();
    }
    const chargedTotal = server.store.getLedger(channelId)?.chargedTotal ?? 0n;
    log(`  settlement: claimed ${formatDollars(claimedOnChain, 6)}, charged ${formatDollars(chargedTotal, 6)}`);

    let latency: McpLatency | undefined;
    if (latencyCalls > 0) {
      const latencyPayer = privateKeyToAccount(generatePrivateKey());
      await chain.mint(latencyPayer.address, 10_000_000n);
      latency = await measureMcpLatency(mcp.url, buyerOptions(latencyPayer, mcp.url), latencyCalls);
      const f = (ms: number) => ms.toFixed(2);
      log(
        `  latency over ${latency.calls} sequential calls: free p50 ${f(latency.freeP50)} ms p99 ${f(latency.freeP99)} ms; ` +
          `paid p50 ${f(latency.paidP50)} ms p99 ${f(latency.paidP99)} ms`,
      );
    }
    return {
      mcpPaidCalls: paid,
      claimedOnChain: claimedOnChain.toString(),
      chargedTotal: chargedTotal.toString(),
      ...(latency ? { latency } : {}),
    };
  } finally {
    await mcp?.close();
    await chain?.stop();
  }
}

if (require.main === module) {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  runDemoMcp(log).then(
    ({ mcpPaidCalls, claimedOnChain, chargedTotal }) => {
      const ok = claimedOnChain === chargedTotal;
      log(ok ? "  OK: claimed on-chain == charged" : "  MISMATCH: claimed on-chain != charged");
      log(JSON.stringify({ mcpPaidCalls, claimedOnChain, chargedTotal }));
      setTimeout(() => process.exit(ok ? 0 : 1), 200).unref();
    },
    (error: unknown) => {
      process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
