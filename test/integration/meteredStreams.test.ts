import { expect } from "chai";
import express from "express";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { createPublicClient, http as httpTransport, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { WebSocketServer } from "ws";
import { createPayingFetch, openChannel, termsFromOffer, type PaidResponse } from "../../src/client";
import { decodeHeader } from "../../src/protocol/headers";
import { SseParser, type StreamReceipt } from "../../src/protocol/stream";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { meteredResponse } from "../../src/server/meter/meteredResponse";
import type { MeteredStream } from "../../src/server/meter/meteredStream";
import { paywall } from "../../src/server/paywall";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { mintUsdc, settleChannel } from "../helpers/localSettle";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { writeLocalConfig } from "../helpers/localServer";
import { streamTokens } from "../helpers/tokenModel";

/**
 * Metered streams end to end (docs/protocol.md#metered-streams): a real `hardhat node`, the real
 * payment server (proxy, SQLite) in front of an LLM-like upstream streaming tokens over SSE and
 * WebSocket, an Express app with the paywall, and createPayingFetch paying the blocks in-band.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const UNIT_PRICE = 10n;
const BLOCK_UNITS = 50;
const BLOCK_PRICE = UNIT_PRICE * BigInt(BLOCK_UNITS);
const DEPOSIT = 50_000_000n;

/**
 * The upstream: `GET /llm?tokens=N&delay=ms` streams N tokens as SSE events of 1 to 3 tokens,
 * each followed by its `paychan-usage` report; `GET /ws?messages=N` (WebSocket) sends N messages
 * and closes.
 */
async function startUpstream(): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://upstream");
    if (url.pathname === "/raw") {
      // A plain chunked body: 1,000 bytes in chunks of 100.
      res.writeHead(200, { "content-type": "application/octet-stream" });
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(100, 97 + i));
      res.end();
      return;
    }
    if (url.searchParams.has("fail")) {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "model unavailable" }));
      return;
    }
    streamTokens(res, Number(url.searchParams.get("tokens") ?? "100"), Number(url.searchParams.get("delay") ?? "0"));
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (socket, req) => {
    const url = new URL(req.url ?? "/", "http://upstream");
    const total = Number(url.searchParams.get("messages") ?? "10");
    let i = 0;
    const next = () => {
      if (socket.readyState !== socket.OPEN) return;
      if (i >= total) {
        socket.close(1000);
        return;
      }
      socket.send(`message ${i++}`);
      setImmediate(next);
    };
    next();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Reads a metered SSE body to its end: the application's events (tokens counted) and raw text. */
async function readTokens(response: Response, stopAfter = Infinity): Promise<{ tokens: number; events: number }> {
  const parser = new SseParser();
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let tokens = 0;
  let events = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.push(decoder.decode(value, { stream: true }))) {
      expect(event.event).to.equal("message");
      tokens += (JSON.parse(event.data) as { tokens: string[] }).tokens.length;
      events++;
    }
    if (tokens >= stopAfter) {
      await reader.cancel();
      break;
    }
  }
  return { tokens, events };
}

describe("metered streams (SSE and WebSocket, real chain and HTTP)", function () {
  this.timeout(180_000);
  let node: HardhatNode;
  let publicClient: PublicClient;
  let upstream: { server: http.Server; url: string };
  let dir: string;
  let configFile: string;
  let server: PaymentServer;
  let baseUrl: string;
  let buyer: PrivateKeyAccount;
  let session: PrivateKeyAccount;
  let channelId: bigint;
  const closed: { stream: MeteredStream; receipt: StreamReceipt }[] = [];

  const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };

  async function start(): Promise<void> {
    server = await createPaymentServer(loadConfig(configFile, env), { logger: createLogger({ level: "error" }) });
    baseUrl = `http://127.0.0.1:${(await server.start()).port}`;
    server.proxy.streams.onClose = (stream, receipt) => closed.push({ stream, receipt });
  }

  function payer(limits: { maxPerStream?: bigint } = {}) {
    return createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest: BLOCK_PRICE,
      maxTotal: DEPOSIT,
      channel: channelId,
      ...limits,
    });
  }

  /**
   * The charges the store holds for the vouchers that paid a stream's blocks, once they equal
   * `expected` (the store applies lowered charges asynchronously), else what it holds after 3 s.
   */
  async function storedCharges(receipt: StreamReceipt, expected = BigInt(receipt.charge)): Promise<bigint> {
    const deadline = Date.now() + 3_000;
    for (;;) {
      const sum = storedSum(receipt);
      if (sum === expected || Date.now() > deadline) return sum;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  function storedSum(receipt: StreamReceipt): bigint {
    let sum = 0n;
    for (const block of receipt.blocks) {
      const stored = server.store.findVoucher(BigInt(block.extra.channelId), BigInt(block.extra.voucherAmount));
      expect(stored, `block voucher ${block.extra.voucherAmount} stored`).to.not.equal(undefined);
      sum += stored!.charge;
    }
    return sum;
  }

  async function waitFor<T>(what: string, get: () => T | undefined, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = get();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: usdc, PaymentChannels: contract } = node.deployments!;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    upstream = await startUpstream();
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-metered-"));
    configFile = writeLocalConfig(
      path.join(dir, "paychan.config.json"),
      { rpcUrl: node.url, contract, token: usdc },
      {
        upstream: upstream.url,
        database: { path: path.join(dir, "paychan.db"), durable: true },
        routes: {
          "GET /llm": {
            price: UNIT_PRICE.toString(),
            meter: { unit: "token", blockUnits: BLOCK_UNITS, voucherTimeoutMs: 1_500 },
          },
          "GET /ws": { price: UNIT_PRICE.toString(), meter: { unit: "chunk", blockUnits: 20 } },
          "GET /raw": { price: "1", meter: { unit: "byte", blockUnits: 250, voucherTimeoutMs: 300 } },
        },
      },
    );
    await start();

    buyer = privateKeyToAccount(generatePrivateKey());
    session = privateKeyToAccount(generatePrivateKey());
    await mintUsdc(publicClient, node.url, MINTER_KEY, usdc, buyer.address, DEPOSIT);
    const probe = await fetch(`${baseUrl}/llm`);
    expect(probe.status).to.equal(402);
    const offer = decodeHeader<{ accepts: [Parameters<typeof termsFromOffer>[0]] }>(
      probe.headers.get("payment-required")!,
    ).accepts[0];
    expect(offer.amount).to.equal(BLOCK_PRICE.toString());
    expect(offer.extra.pricing).to.equal("upto");
    const opened = await openChannel({
      terms: termsFromOffer(offer, `${baseUrl}/llm`),
      funding: { kind: "relay", payer: buyer },
      signer: session.address,
      amount: DEPOSIT,
      withdrawDelay: 86_400,
    });
    channelId = opened.channelId;
  });

  after(async () => {
    await server?.stop().catch(() => undefined);
    upstream?.server.closeAllConnections();
    await new Promise<void>((resolve) => (upstream ? upstream.server.close(() => resolve()) : resolve()));
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("streams 200 tokens, asking for each next block in-band, and ends with an exact receipt", async () => {
    const pay = payer();
    const before = server.store.getLedger(channelId)?.chargedTotal ?? 0n;
    const response: PaidResponse = await pay(`${baseUrl}/llm?tokens=200`);
    expect(response.status).to.equal(200);
    expect(response.stream).to.not.equal(undefined);
    const { tokens } = await readTokens(response);
    expect(tokens).to.equal(200);
    const verified = await response.stream!.receipt;
    expect(verified?.valid, verified?.problem).to.equal(true);
    expect(verified!.receipt.units).to.equal(200);
    expect(verified!.receipt.ended).to.equal("complete");
    expect(BigInt(verified!.receipt.charge)).to.equal(200n * UNIT_PRICE);
    expect(response.stream!.vouchers).to.be.at.least(3);
    expect(await storedCharges(verified!.receipt)).to.equal(200n * UNIT_PRICE);
    expect(pay.spent).to.equal(200n * UNIT_PRICE);
    await waitFor("ledger", () =>
      server.store.getLedger(channelId)!.chargedTotal - before === 200n * UNIT_PRICE ? true : undefined,
    );
  });

  it("charges a stream the client cuts mid-way only for what was sent to it", async () => {
    const pay = payer();
    const count = closed.length;
    const response = await pay(`${baseUrl}/llm?tokens=1000&delay=5`);
    const { tokens } = await readTokens(response, 120);
    const { receipt, stream } = await waitFor("the stream's end", () => closed[count]);
    expect(receipt.ended).to.equal("client_closed");
    // What reached the client, plus at most the event in flight when it hung up.
    expect(receipt.units).to.be.within(tokens, tokens + 3);
    expect(stream.unitsServed).to.equal(receipt.units);
    expect(BigInt(receipt.charge)).to.equal(BigInt(receipt.units) * UNIT_PRICE);
    expect(await storedCharges(receipt)).to.equal(BigInt(receipt.units) * UNIT_PRICE);
    expect(receipt.units).to.be.below(1000);
  });

  it("pauses a stream whose client stops paying, then ends it: nothing unpaid is sent", async () => {
    // One block only: the client refuses to pay the second (maxPerStream).
    const pay = payer({ maxPerStream: BLOCK_PRICE });
    const started = Date.now();
    const response = await pay(`${baseUrl}/llm?tokens=400`);
    const { tokens } = await readTokens(response);
    const elapsed = Date.now() - started;
    // Events carry 1 to 3 tokens: the event that would cross the block's end is never sent.
    expect(tokens).to.be.within(BLOCK_UNITS - 2, BLOCK_UNITS);
    expect(response.stream!.payError).to.be.an("error");
    const verified = await response.stream!.receipt;
    expect(verified?.valid, verified?.problem).to.equal(true);
    expect(verified!.receipt.ended).to.equal("voucher_timeout");
    expect(verified!.receipt.units).to.equal(tokens);
    expect(BigInt(verified!.receipt.charge)).to.equal(BigInt(tokens) * UNIT_PRICE);
    // It waited (paused) for the voucher timeout before ending.
    expect(elapsed).to.be.at.least(1_400);
  });

  it("meters a plain chunked body per byte: paid ahead by bytes received, the receipt in a trailer", async () => {
    const count = closed.length;
    const response = await payer()(`${baseUrl}/raw`);
    expect(response.status).to.equal(200);
    expect(response.headers.get("paychan-meter")).to.equal("unit=byte; unit-price=1; block-units=250");
    expect(response.headers.get("trailer")).to.equal("payment-receipt");
    expect((await response.arrayBuffer()).byteLength).to.equal(1_000);
    // The last block's answer may reach the client after the bytes it paid for.
    await waitFor("three mid-stream vouchers", () => (response.stream!.vouchers >= 3 ? true : undefined));
    const { receipt } = await waitFor("the stream's end", () => closed[count]);
    expect(receipt.ended).to.equal("complete");
    expect(receipt.units).to.equal(1_000);
    expect(receipt.charge).to.equal("1000");
    expect(await storedCharges(receipt)).to.equal(1_000n);
  });

  it("never sends the bytes of a chunked body beyond the blocks paid, and ends it when no voucher comes", async () => {
    const count = closed.length;
    // One block only (maxPerStream): the server pauses after 250 bytes, then ends the stream.
    const response = await payer({ maxPerStream: 250n })(`${baseUrl}/raw`);
    expect((await response.arrayBuffer()).byteLength).to.equal(250);
    const { receipt } = await waitFor("the stream's end", () => closed[count]);
    expect(receipt.ended).to.equal("voucher_timeout");
    expect(receipt.units).to.equal(250);
    expect(receipt.charge).to.equal("250");
  });

  it("charges nothing when the upstream answers a metered route with an error instead of a stream", async () => {
    const pay = payer();
    const response = await pay(`${baseUrl}/llm?fail=1`);
    expect(response.status).to.equal(500);
    expect(await response.json()).to.deep.equal({ error: "model unavailable" });
    // Paid for (the voucher stands, as for any upstream failure), charged nothing.
    const paid = decodeHeader<{ amount: string; extra: { receipt: { charge: string } } }>(
      response.headers.get("payment-response")!,
    );
    expect(paid.amount).to.equal("0");
    expect(paid.extra.receipt.charge).to.equal("0");
  });

  it("charges 32 concurrent streams on one channel exactly", async () => {
    const pay = payer();
    const before = server.store.getLedger(channelId)!.chargedTotal;
    const spentBefore = pay.spent;
    const sizes = Array.from({ length: 32 }, (_, i) => 60 + i * 7);
    const results = await Promise.all(
      sizes.map(async (size) => {
        const response = await pay(`${baseUrl}/llm?tokens=${size}`);
        expect(response.status).to.equal(200);
        const { tokens } = await readTokens(response);
        const verified = await response.stream!.receipt;
        expect(verified?.valid, verified?.problem).to.equal(true);
        return { tokens, receipt: verified!.receipt };
      }),
    );
    const expected = sizes.reduce((sum, n) => sum + BigInt(n), 0n) * UNIT_PRICE;
    for (const [i, r] of results.entries()) {
      expect(r.tokens).to.equal(sizes[i]);
      expect(r.receipt.units).to.equal(sizes[i]);
      expect(await storedCharges(r.receipt)).to.equal(BigInt(sizes[i]) * UNIT_PRICE);
    }
    expect(pay.spent - spentBefore).to.equal(expected);
    await waitFor("ledger", () =>
      server.store.getLedger(channelId)!.chargedTotal - before === expected ? true : undefined,
    );
  });

  it("meters a WebSocket per message, vouchers in the socket, receipt at close", async () => {
    const pay = payer();
    const socket = await pay.openWebSocket(`${baseUrl.replace("http", "ws")}/ws?messages=75`);
    const received: string[] = [];
    socket.onMessage((data) => received.push(String(data)));
    const { code, receipt } = await socket.closed;
    expect(code).to.equal(1000);
    expect(received).to.have.length(75);
    expect(received[74]).to.equal("message 74");
    expect(receipt?.valid, receipt?.problem).to.equal(true);
    expect(receipt!.receipt.units).to.equal(75);
    expect(BigInt(receipt!.receipt.charge)).to.equal(75n * UNIT_PRICE);
    expect(socket.vouchers).to.be.at.least(3);
    expect(await storedCharges(receipt!.receipt)).to.equal(75n * UNIT_PRICE);
  });

  it("meters a stream written by an Express app behind the paywall", async () => {
    const app = express();
    app.use(
      paywall({
        gate: server.gate,
        decimals: 6,
        page: null,
        routes: { "GET /count": { price: UNIT_PRICE.toString(), meter: { unit: "chunk", blockUnits: 10 } } },
      }),
    );
    app.get("/count", async (_req, res) => {
      const stream = meteredResponse(res)!;
      for (let i = 0; i < 35; i++) if (!(await stream.send(`data: {"tokens":["${i}"]}\n\n`, 1))) return;
      stream.end();
    });
    const listener = app.listen(0, "127.0.0.1");
    await new Promise((resolve) => listener.once("listening", resolve));
    try {
      const pay = payer();
      const response = await pay(`http://127.0.0.1:${(listener.address() as AddressInfo).port}/count`);
      const { events } = await readTokens(response);
      expect(events).to.equal(35);
      const verified = await response.stream!.receipt;
      expect(verified?.valid, verified?.problem).to.equal(true);
      expect(verified!.receipt.units).to.equal(35);
      expect(BigInt(verified!.receipt.charge)).to.equal(35n * UNIT_PRICE);
      expect(response.stream!.vouchers).to.be.at.least(3);
    } finally {
      listener.closeAllConnections();
      await new Promise((resolve) => listener.close(resolve));
    }
  });

  it("loses no accepted voucher when the server restarts mid-stream; all are claimable", async () => {
    const pay = payer();
    const response = await pay(`${baseUrl}/llm?tokens=2000&delay=2`);
    const reading = readTokens(response).catch(() => ({ tokens: -1, events: -1 }));
    await waitFor("three mid-stream vouchers", () => (response.stream!.vouchers >= 3 ? true : undefined), 30_000);
    const accepted = [response.payment!.amount, ...response.stream!.blocks.map((b) => BigInt(b.extra.voucherAmount))];
    await server.stop();
    await reading;
    await start();
    for (const amount of accepted) {
      expect(server.store.findVoucher(channelId, amount), `voucher ${amount} after restart`).to.not.equal(undefined);
    }
    const ledger = server.store.getLedger(channelId)!;
    expect(ledger.highestAmount >= accepted.reduce((a, b) => (a > b ? a : b))).to.equal(true);
    // The claim is the lowest stored voucher covering the charge; the ones above it stay claimable.
    const covering = server.store
      .loadVoucherAmounts(channelId)
      .filter((amount) => amount >= ledger.chargedTotal)
      .reduce((a, b) => (a < b ? a : b));

    const { claimed } = await settleChannel(
      publicClient,
      node.url,
      PAYEE_KEY,
      server.store,
      node.deployments!.PaymentChannels,
      channelId,
    );
    expect(claimed).to.equal(covering);
    for (const amount of accepted.filter((a) => a > covering)) {
      expect(server.store.findVoucher(channelId, amount), `voucher ${amount} after the claim`).to.not.equal(undefined);
    }
  });
});
