import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { z } from "zod/v4";
import { createPayingMcpClient, paidTool, type PayingMcpClient } from "../../src/mcp";
import type { PayingFetchOptions } from "../../src/client";
import type { RelayEndpoint } from "../../src/server";
import type { PaymentGate } from "../../src/server/gate";

/**
 * Paid MCP tool calls for the demos (and the tests): an MCP server of the official SDK over
 * streamable HTTP whose `weather` tool is priced through a paychan gate, and a buyer making many
 * paid calls through one channel.
 */

/** Atomic units a `weather` call costs by default ($0.001 in a 6-decimal token). */
export const WEATHER_PRICE = 1_000n;

export interface PaidMcpServerOptions {
  /** The gate of a running paychan server (`createPaymentServer(...).gate`), its chain started. */
  readonly gate: PaymentGate;
  /** The server's gasless relay, served beside the MCP endpoint so that offers' relay path resolves. */
  readonly relay?: RelayEndpoint;
  readonly port?: number;
  /** Price of `weather`, atomic units. */
  readonly price?: bigint;
  /** Registers more tools on each session's server. */
  readonly register?: (server: McpServer, gate: PaymentGate) => void;
}

export interface PaidMcpServer {
  /** The MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Starts an MCP server (one `McpServer` per session, streamable HTTP with JSON answers) with the
 * tools `weather` (priced) and `ping` (free), plus those of `register`.
 */
export async function startPaidMcpServer(options: PaidMcpServerOptions): Promise<PaidMcpServer> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const build = (): McpServer => {
    const server = new McpServer({ name: "paychan-demo", version: "1.0.0" });
    paidTool(
      server,
      options.gate,
      "weather",
      { price: options.price ?? WEATHER_PRICE, description: "Weather in a city", inputSchema: { city: z.string() } },
      ({ city }) => ({ content: [{ type: "text", text: JSON.stringify({ city, tempC: 21 }) }] }),
    );
    server.registerTool("ping", { description: "Free", inputSchema: { city: z.string() } }, ({ city }) => ({
      content: [{ type: "text", text: JSON.stringify({ city, tempC: 21 }) }],
    }));
    options.register?.(server, options.gate);
    return server;
  };

  const relay = options.relay;
  const relayOpen = relay && `${relay.path}/open`;
  const relayTopUp = relay && `${relay.path}/topup`;
  const httpServer = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (relay && (path === relayOpen || path === relayTopUp)) {
      void relay.handle(path === relayOpen ? "open" : "topup", req, res);
      return;
    }
    if (path !== "/mcp") {
      res.writeHead(404).end();
      return;
    }
    const id = req.headers["mcp-session-id"];
    let transport = typeof id === "string" ? sessions.get(id) : undefined;
    if (!transport) {
      // A new session (an initialize request; the transport refuses anything else without one).
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: true,
        onsessioninitialized: (sessionId) => void sessions.set(sessionId, created),
      });
      created.onclose = () => {
        if (created.sessionId) sessions.delete(created.sessionId);
      };
      transport = created;
      const server = build();
      server.connect(created).then(
        () => created.handleRequest(req, res),
        () => res.writeHead(500).end(),
      );
      return;
    }
    transport.handleRequest(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => httpServer.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = httpServer.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    async close() {
      for (const transport of sessions.values()) await transport.close().catch(() => undefined);
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

/** An SDK client connected to `url` over streamable HTTP. */
export async function connectMcpClient(url: string): Promise<Client> {
  const client = new Client({ name: "paychan-demo-buyer", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

export interface PayMcpCallsOptions extends PayingFetchOptions {
  /** The MCP endpoint of {@link startPaidMcpServer}. */
  readonly url: string;
  /** Paid `weather` calls to make. */
  readonly n: number;
  /** Calls in flight at once. */
  readonly concurrency: number;
}

export interface PaidCalls {
  readonly paid: number;
  /** What the receipts charged, atomic units. */
  readonly charged: bigint;
  /** The channel paid through (undefined when nothing was paid). */
  readonly channelId: bigint | undefined;
}

/** Runs `tasks` with at most `limit` in flight. */
export async function runConcurrently(tasks: readonly (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, tasks.length)) }, worker));
}

/**
 * Makes `n` paid `weather` calls through one channel: the first alone (it opens the channel),
 * then `concurrency` at a time, and the last `concurrency + 1` one at a time. Vouchers signed
 * while calls overlap may run ahead of the charges; the calls made one at a time bring the best
 * voucher (what a claim collects) back to the charged total. Throws on any call left unpaid.
 */
export async function payMcpCalls(options: PayMcpCallsOptions): Promise<PaidCalls> {
  const { url, n, concurrency, ...paying } = options;
  const client = await connectMcpClient(url);
  try {
    return await payWith(createPayingMcpClient(client, paying), n, concurrency);
  } finally {
    await client.close();
  }
}

/** {@link payMcpCalls} with a paying client already made. */
export async function payWith(buyer: PayingMcpClient, n: number, concurrency: number): Promise<PaidCalls> {
  let paid = 0;
  let charged = 0n;
  let channelId: bigint | undefined;
  const call = (i: number) => async () => {
    const { result, payment } = await buyer.callTool("weather", { city: `city-${i}` });
    if (!payment || result.isError) throw new Error(`MCP call ${i} was not paid: ${JSON.stringify(result)}`);
    paid++;
    charged += payment.charge;
    channelId = payment.channelId;
  };
  const tail = Math.min(n, concurrency + 1);
  let i = 0;
  if (n > tail) await call(i++)();
  const burst: (() => Promise<void>)[] = [];
  while (i < n - tail) burst.push(call(i++));
  await runConcurrently(burst, concurrency);
  while (i < n) await call(i++)();
  return { paid, charged, channelId };
}
