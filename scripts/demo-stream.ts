import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createPublicClient, http as httpTransport, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { WebSocketServer } from "ws";
import { createPayingFetch, openChannel, termsFromOffer, type VerifiedStreamReceipt } from "../src/client";
import { formatDollars } from "../src/protocol/price";
import { SseParser, type StreamReceipt } from "../src/protocol/stream";
import { createPaymentServer, type PaymentServer } from "../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../src/shared/config";
import { createLogger } from "../src/shared/log";
import { HARDHAT_KEYS } from "../test/helpers/hardhatKeys";
import { claimedOnChain, mintUsdc, settleChannel } from "../test/helpers/localSettle";
import { writeLocalConfig } from "../test/helpers/localServer";
import { streamTokens } from "../test/helpers/tokenModel";
import { startHardhatNode, type HardhatNode } from "../test/helpers/hardhatNode";
import { payMcpCalls, startPaidMcpServer, type PaidMcpServer } from "./demo/mcpCalls";

/**
 * Metered streams end to end on a local chain (`npm run demo:stream`):
 *
 *  1. a `hardhat node` child, contracts and mock USDC deployed; the payment server (SQLite) in
 *     front of an LLM-like upstream that streams tokens as server-sent events (each event followed
 *     by its `paychan-usage` report) and as WebSocket messages;
 *  2. a buyer opens one channel gaslessly; 8 concurrent SSE streams of 2,000 tokens each and one
 *     WebSocket stream of 2,000 messages are paid per token, in blocks, mid-stream vouchers in-band;
 *  3. 50 paid MCP tool calls (the official SDK's Client and McpServer over streamable HTTP, the
 *     tool priced through the same payment gate), from another buyer on its own channel;
 *  4. the settler claims both channels; the chain is compared with the store.
 *
 * Prints a summary (with how long the streams paused for mid-stream vouchers), then as its last
 * line one JSON object. Exits non-zero when a token was served beyond what the store charged,
 * when a receipt fails, or when the chain holds less than the store charged.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const UNIT_PRICE = 10n; // $0.00001 a token
const BLOCK_UNITS = 100;
const TOKENS = 2_000;
const SSE_CLIENTS = 8;
const DEPOSIT = 5_000_000n; // $5
const MCP_CALLS = 50;
const MCP_CONCURRENCY = 8;
const MCP_DEPOSIT = 1_000_000n; // $1

/**
 * The LLM-like upstream: `GET /v1/stream` sends TOKENS tokens as SSE events of 1 to 4 tokens, each
 * followed by `event: paychan-usage` with its token count, one event a millisecond; the WebSocket
 * at `/v1/ws` sends TOKENS messages of one token each.
 */
async function startModel(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    streamTokens(res, TOKENS, 1, 4);
  });
  const wss = new WebSocketServer({ server, path: "/v1/ws" });
  wss.on("connection", (socket) => {
    let i = 0;
    const next = () => {
      if (socket.readyState !== socket.OPEN) return;
      if (i >= TOKENS) {
        socket.close(1000);
        return;
      }
      socket.send(JSON.stringify({ token: `tok${i++}` }));
      if (i % 4 === 0) setTimeout(next, 1);
      else setImmediate(next);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Reads an SSE stream to its end and counts the tokens its events carry. */
async function readTokens(body: ReadableStream<Uint8Array>): Promise<number> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  let tokens = 0;
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    for (const event of parser.push(decoder.decode(chunk, { stream: true }))) {
      tokens += (JSON.parse(event.data) as { tokens: string[] }).tokens.length;
    }
  }
  return tokens;
}

async function main(): Promise<number> {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const startedAt = performance.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-demo-stream-"));
  let node: HardhatNode | undefined;
  let model: http.Server | undefined;
  let server: PaymentServer | undefined;
  let mcp: PaidMcpServer | undefined;
  try {
    log("paychan metered streams demo");
    log("  starting a hardhat node and deploying PaymentChannels + mock USDC ...");
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
    const publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;

    model = await startModel();
    const configFile = writeLocalConfig(
      path.join(dir, "paychan.config.json"),
      { rpcUrl: node.url, contract, token: usdc },
      {
        upstream: `http://127.0.0.1:${(model.address() as AddressInfo).port}`,
        routes: {
          "GET /v1/stream": { price: UNIT_PRICE.toString(), meter: { unit: "token", blockUnits: BLOCK_UNITS } },
          "GET /v1/ws": { price: UNIT_PRICE.toString(), meter: { unit: "chunk", blockUnits: BLOCK_UNITS } },
        },
        database: { path: path.join(dir, "paychan.db"), durable: true },
      },
    );
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };
    server = await createPaymentServer(loadConfig(configFile, env), { logger: createLogger({ level: "warn" }) });
    const baseUrl = `http://127.0.0.1:${(await server.start()).port}`;
    log(
      `  payment server ${baseUrl}: ${formatDollars(UNIT_PRICE, 6)} a token, blocks of ${BLOCK_UNITS} tokens ` +
        `(${formatDollars(UNIT_PRICE * BigInt(BLOCK_UNITS), 6)} a voucher)`,
    );
    // Every stream's end, with how long it paused waiting for vouchers.
    const ended: { receipt: StreamReceipt; pauses: readonly number[]; blocks: number }[] = [];
    server.proxy.streams.onClose = (stream, receipt) =>
      ended.push({ receipt, pauses: stream.pauses, blocks: receipt.blocks.length });

    const buyer = privateKeyToAccount(generatePrivateKey());
    const session = privateKeyToAccount(generatePrivateKey());
    await mintUsdc(publicClient, node.url, MINTER_KEY, usdc, buyer.address, DEPOSIT);
    let channelId: bigint | undefined;
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: DEPOSIT,
      channel: async (offer, url) => {
        const opened = await openChannel({
          terms: termsFromOffer(offer, url),
          funding: { kind: "relay", payer: buyer },
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        });
        log(`  channel 0x${opened.channelId.toString(16)} opened gaslessly (${formatDollars(DEPOSIT, 6)})`);
        channelId = opened.channelId;
        return opened.channelId;
      },
    });
    // The channel first, so that the concurrent streams share it.
    await (await pay(`${baseUrl}/v1/stream?warmup=1`)).body?.cancel();

    log(`  ${SSE_CLIENTS} SSE streams and 1 WebSocket stream of ${TOKENS} tokens each, concurrently ...`);
    const streamsStarted = performance.now();
    const sse = Array.from({ length: SSE_CLIENTS }, async (_, i) => {
      const response = await pay(`${baseUrl}/v1/stream?client=${i}`);
      if (response.status !== 200 || !response.stream) throw new Error(`stream ${i}: status ${response.status}`);
      const tokens = await readTokens(response.body!);
      const verified = await response.stream.receipt;
      return { tokens, verified, vouchers: response.stream.vouchers, voucherMs: response.stream.voucherMs };
    });
    const ws = (async () => {
      const socket = await pay.openWebSocket(`${baseUrl.replace("http", "ws")}/v1/ws`);
      let tokens = 0;
      socket.onMessage(() => tokens++);
      const { receipt: verified } = await socket.closed;
      return { tokens, verified, vouchers: socket.vouchers, voucherMs: socket.voucherMs };
    })();
    const results = await Promise.all([...sse, ws]);
    const streamsMs = performance.now() - streamsStarted;

    const invalid = results.filter((r) => !r.verified?.valid);
    for (const r of invalid) log(`  INVALID RECEIPT: ${r.verified?.problem ?? "none received"}`);
    const receipts = results.map((r) => r.verified).filter((v): v is VerifiedStreamReceipt => v !== undefined);
    const tokensServed = results.reduce((sum, r) => sum + r.tokens, 0);
    const midStreamVouchers = results.reduce((sum, r) => sum + r.vouchers, 0);

    // What the store charged each stream: its block vouchers' charges, once adjusted by use.
    const store = server.store;
    const storedCharge = (receipt: StreamReceipt) =>
      receipt.blocks.reduce(
        (sum, b) => sum + (store.findVoucher(BigInt(b.extra.channelId), BigInt(b.extra.voucherAmount))?.charge ?? 0n),
        0n,
      );
    const expected = receipts.reduce((sum, v) => sum + BigInt(v.receipt.charge), 0n);
    const deadline = Date.now() + 5_000;
    while (receipts.reduce((sum, v) => sum + storedCharge(v.receipt), 0n) !== expected && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    let unpaidServed = 0;
    let tokensCharged = 0;
    for (const [i, r] of results.entries()) {
      const charged = r.verified ? Number(storedCharge(r.verified.receipt) / UNIT_PRICE) : 0;
      tokensCharged += charged;
      unpaidServed += Math.max(0, r.tokens - charged);
      if (r.tokens !== TOKENS) log(`  stream ${i}: ${r.tokens} tokens received, ${TOKENS} expected`);
    }

    // Pauses: each mid-stream voucher either arrived before its block was needed (no pause) or
    // ended one pause of the stream (waiting for it).
    const streamsEnded = ended.filter((e) => e.receipt.units > 0 && e.receipt.units >= TOKENS);
    const pauses = streamsEnded.flatMap((e) => [
      ...e.pauses,
      ...Array<number>(Math.max(0, e.blocks - 1 - e.pauses.length)).fill(0),
    ]);
    const roundTrips = results.flatMap((r) => r.voucherMs);
    log(
      `  ${results.length} streams done in ${(streamsMs / 1000).toFixed(2)} s: ${tokensServed} tokens received, ` +
        `${tokensCharged} charged, ${midStreamVouchers} mid-stream vouchers, ${receipts.length} receipts verified`,
    );
    log(
      `  mid-stream voucher pause (stream waiting for it): p50 ${percentile(pauses, 50).toFixed(2)} ms, ` +
        `p99 ${percentile(pauses, 99).toFixed(2)} ms over ${pauses.length} vouchers ` +
        `(${pauses.filter((p) => p > 0).length} paused the stream at all)`,
    );
    log(
      `  mid-stream voucher round trip (asked → accepted, client side): p50 ${percentile(roundTrips, 50).toFixed(2)} ms, ` +
        `p99 ${percentile(roundTrips, 99).toFixed(2)} ms`,
    );

    // Paid MCP tool calls through the same gate, by another buyer on its own channel.
    mcp = await startPaidMcpServer({ gate: server.gate, relay: server.relay });
    const mcpBuyer = privateKeyToAccount(generatePrivateKey());
    const mcpSession = privateKeyToAccount(generatePrivateKey());
    await mintUsdc(publicClient, node.url, MINTER_KEY, usdc, mcpBuyer.address, MCP_DEPOSIT);
    const mcpStarted = performance.now();
    const mcpCalls = await payMcpCalls({
      url: mcp.url,
      n: MCP_CALLS,
      concurrency: MCP_CONCURRENCY,
      sessionAccount: mcpSession,
      maxPerRequest: 10_000n,
      maxTotal: MCP_DEPOSIT,
      channel: async (offer) =>
        openChannel({
          terms: termsFromOffer(offer, mcp!.url),
          funding: { kind: "relay", payer: mcpBuyer },
          signer: mcpSession.address,
          amount: MCP_DEPOSIT,
          withdrawDelay: 86_400,
        }),
    });
    const mcpPaidCalls = mcpCalls.paid;
    log(
      `  ${mcpPaidCalls} paid MCP tool calls (${MCP_CONCURRENCY} at a time) in ` +
        `${((performance.now() - mcpStarted) / 1000).toFixed(2)} s, ${formatDollars(mcpCalls.charged, 6)} charged`,
    );

    if (channelId === undefined || mcpCalls.channelId === undefined) throw new Error("no channel was opened");
    const channels = [channelId, mcpCalls.channelId];
    const claimedOf = (id: bigint) => claimedOnChain(publicClient, contract, id);
    // One settler pass claims every candidate channel; a channel not yet a candidate gets its own.
    const reports = [];
    for (const id of channels) {
      if (!store.getLedger(id)) throw new Error(`the server has no ledger for channel 0x${id.toString(16)}`);
      if ((await claimedOf(id)) >= store.getLedger(id)!.chargedTotal) continue;
      const settled = await settleChannel(publicClient, node.url, PAYEE_KEY, store, contract, id, (cause, error) =>
        log(`  settler ${cause}: ${(error as Error).message ?? String(error)}`),
      );
      reports.push(...settled.reports);
    }
    let claimed = 0n;
    let charged = 0n;
    let best = 0n;
    for (const id of channels) {
      claimed += await claimedOf(id);
      charged += store.getLedger(id)!.chargedTotal;
      best += store.getLedger(id)!.highestAmount;
    }
    const mcpClaimed = await claimedOf(mcpCalls.channelId);
    const mcpCharged = store.getLedger(mcpCalls.channelId)!.chargedTotal;
    log(
      `  settlement: ${reports.length} claimBatch tx; claimed on-chain ${formatDollars(claimed, 6)} ` +
        `(per channel, the lowest voucher covering its charge), charged ${formatDollars(charged, 6)} (the warm-up ` +
        `stream and the MCP calls included); the best vouchers, ${formatDollars(best, 6)}, stay ` +
        `${formatDollars(best - claimed, 6)} above: blocks signed beyond their use, not claimed`,
    );
    const ok =
      unpaidServed === 0 &&
      invalid.length === 0 &&
      claimed >= charged &&
      mcpPaidCalls === MCP_CALLS &&
      mcpClaimed === mcpCharged;
    log(ok ? "  OK: nothing served unpaid, every receipt verified" : "  FAILED");
    log(`  total ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
    log(
      JSON.stringify({
        streams: results.length,
        tokensServed,
        tokensCharged,
        midStreamVouchers,
        mcpPaidCalls,
        unpaidServed,
        claimedOnChain: claimed.toString(),
        chargedTotal: charged.toString(),
      }),
    );
    return ok ? 0 : 1;
  } finally {
    await mcp?.close().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    if (model) {
      model.closeAllConnections();
      await new Promise<void>((resolve) => model!.close(() => resolve()));
    }
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 200).unref();
  },
  (error: unknown) => {
    process.stderr.write(`demo failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
