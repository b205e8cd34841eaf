import { serve, type ServerType } from "@hono/node-server";
import { paymentMiddleware as expressPayment, x402ResourceServer } from "@x402/express";
import { paymentMiddleware as honoPayment } from "@x402/hono";
import { expect } from "chai";
import express from "express";
import { Hono } from "hono";
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { createPublicClient, createWalletClient, http as httpTransport, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { createPayingFetch, openChannel, termsFromOffer, type PayingFetch } from "../../src/client";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { x402Channel, type X402Channel } from "../../src/server/x402/x402Channel";
import { startSettler } from "../../src/settler/main";
import { loadConfig, PAYEE_KEY_ENV } from "../../src/shared/config";
import { silentLogger } from "../../src/shared/log";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { writeLocalConfig } from "../helpers/localServer";
import { validPaymentRequired, validSettleResponse } from "../helpers/x402Wire";

/**
 * paychan's x402 server plug-in in real x402 servers: an @x402/express app and an @x402/hono app
 * register scheme "channel" with the in-process facilitator, paychan's own paying client pays
 * them over HTTP, channels live on a real `hardhat node`, and the settler claims on-chain exactly
 * what the plug-in charged. A handler that fails (an error status, or a throw) costs the payer
 * nothing: its voucher is dropped, never stored and never claimed.
 */

const PAYER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const PRICE = 1_000n; // "$0.001"
const DEPOSIT = 5_000_000n;

describe("x402 server plug-in (@x402/express and @x402/hono, hardhat node)", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let dir: string;
  let configFile: string;
  let server: PaymentServer;
  let channel: X402Channel;
  let expressServer: Server;
  let honoServer: ServerType;
  let expressUrl: string;
  let honoUrl: string;
  const served = new Map<string, number>();
  const count = (route: string) => served.set(route, (served.get(route) ?? 0) + 1);

  /** paychan's paying client and the channel it pays with, opened (approve + open) on first use. */
  function payingClient(): { pay: PayingFetch; channelId: () => bigint } {
    let channelId: bigint | undefined;
    const payer = privateKeyToAccount(PAYER_KEY);
    const wallet = createWalletClient({ account: payer, chain: hardhat, transport: httpTransport(node.url) });
    const session = privateKeyToAccount(generatePrivateKey());
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
      onPayment: (payment) => (channelId = payment.channelId),
      channel: async (offer, url) =>
        (
          await openChannel({
            terms: termsFromOffer(offer, url),
            funding: { kind: "approve", publicClient, wallet },
            signer: session.address,
            amount: DEPOSIT,
            withdrawDelay: 86_400,
          })
        ).channelId,
    });
    return { pay, channelId: () => channelId ?? expect.fail("no payment yet") };
  }

  function routes(network: string, payTo: string) {
    const accepts = { scheme: "channel", network: network as `${string}:${string}`, payTo, price: "$0.001" };
    return {
      "GET /weather": { accepts, description: "Weather" },
      "GET /broken": { accepts },
      "GET /throws": { accepts },
    };
  }

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    const { MockUSDC: token, PaymentChannels: contract } = node.deployments!;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    const payer = privateKeyToAccount(PAYER_KEY);
    const wallet = createWalletClient({ account: payer, chain: hardhat, transport: httpTransport(node.url) });
    await publicClient.waitForTransactionReceipt({
      hash: await wallet.writeContract({
        address: token,
        abi: usdcAbi,
        functionName: "mint",
        args: [payer.address, 50_000_000n],
      }),
    });

    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-x402-server-"));
    configFile = writeLocalConfig(
      path.join(dir, "paychan.config.json"),
      { rpcUrl: node.url, contract, token },
      { routes: { "GET /unused": "$0.001" }, settler: { minUnclaimed: "0", intervalSec: 1, watch: false } },
    );
    server = await createPaymentServer(loadConfig(configFile, { [PAYEE_KEY_ENV]: PAYEE_KEY }), {
      logger: silentLogger,
    });
    await server.startChain();
    channel = x402Channel(server);

    const app = express();
    app.set("env", "test"); // keep Express's error handler from logging the deliberate throw
    app.use(
      expressPayment(
        routes(channel.network, channel.payTo),
        new x402ResourceServer(channel.facilitator).register(channel.network, channel.scheme),
      ),
    );
    app.get("/weather", (req, res) => {
      count("express /weather");
      res.json({ city: req.query.city ?? "Lisbon", tempC: 21 });
    });
    app.get("/broken", (_req, res) => {
      count("express /broken");
      res.status(500).json({ error: "upstream down" });
    });
    app.get("/throws", () => {
      count("express /throws");
      throw new Error("handler bug");
    });
    expressServer = app.listen(0, "127.0.0.1");
    await new Promise<void>((resolve) => expressServer.once("listening", resolve));
    expressUrl = `http://127.0.0.1:${(expressServer.address() as AddressInfo).port}`;

    const hono = new Hono();
    hono.use(
      honoPayment(
        routes(channel.network, channel.payTo),
        new x402ResourceServer(channel.facilitator).register(channel.network, channel.scheme),
      ),
    );
    hono.get("/weather", (c) => {
      count("hono /weather");
      return c.json({ city: c.req.query("city") ?? "Porto", tempC: 19 });
    });
    hono.get("/broken", (c) => {
      count("hono /broken");
      return c.json({ error: "upstream down" }, 503);
    });
    await new Promise<void>((resolve) => {
      honoServer = serve({ fetch: hono.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
        honoUrl = `http://127.0.0.1:${info.port}`;
        resolve();
      });
    });
  });

  after(async () => {
    expressServer?.closeAllConnections();
    await new Promise<void>((resolve) => (expressServer ? expressServer.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (honoServer ? honoServer.close(() => resolve()) : resolve()));
    await server?.stop();
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Pays `n` requests to `url` (`concurrent` at a time); returns the sum of the charges of their receipts. */
  async function payMany(pay: PayingFetch, url: string, n: number, concurrent: number): Promise<bigint> {
    let charged = 0n;
    for (let i = 0; i < n; i += concurrent) {
      const batch = Array.from({ length: Math.min(concurrent, n - i) }, async (_, k) => {
        const response = await pay(`${url}?city=c${i + k}`);
        expect(response.status, await response.clone().text()).to.equal(200);
        await response.arrayBuffer();
        expect(response.payment?.receiptValid).to.equal(true);
        // x402's own validator accepts the PAYMENT-RESPONSE; this request's charge is its amount.
        const settledHeader = await validSettleResponse(response.headers.get("payment-response")!);
        expect(settledHeader.amount).to.equal(PRICE.toString());
        charged += response.payment!.charge;
      });
      await Promise.all(batch);
    }
    return charged;
  }

  function ledgerCharged(channelId: bigint): bigint {
    return server.store.getLedger(channelId)?.chargedTotal ?? 0n;
  }

  let expressPay: PayingFetch;
  let expressChannel: bigint;
  let honoChannel: bigint;
  let expressCharged = 0n;
  let honoCharged = 0n;

  it("an @x402/express app with the plug-in offers the channel in a 402 that x402's validator accepts", async () => {
    const unpaid = await fetch(`${expressUrl}/weather`);
    expect(unpaid.status).to.equal(402);
    await unpaid.arrayBuffer();
    const required = validPaymentRequired(unpaid.headers.get("payment-required")!);
    expect(required.accepts).to.have.length(1);
    expect(required.accepts[0]).to.deep.include({
      scheme: "channel",
      network: channel.network,
      amount: PRICE.toString(),
    });
    expect(required.accepts[0].extra).to.deep.include({ name: "USD Coin", version: "2", pricing: "fixed" });
  });

  it("an @x402/express app with the plug-in is paid by paychan's client, sequentially and 16 at a time", async () => {
    const client = payingClient();
    expressPay = client.pay;
    expressCharged += await payMany(expressPay, `${expressUrl}/weather`, 8, 1);
    expressCharged += await payMany(expressPay, `${expressUrl}/weather`, 32, 16);
    expressChannel = client.channelId();
    expect(expressCharged).to.equal(40n * PRICE);
    expect(ledgerCharged(expressChannel)).to.equal(expressCharged);
    expect(served.get("express /weather")).to.equal(40);
    // Both apps share one plug-in: the server has one set of reservations.
    expect(x402Channel(server)).to.equal(channel);
  });

  it("a failing handler (error status or throw) releases the reservation: nothing charged, nothing stored", async () => {
    const ledgerBefore = server.store.getLedger(expressChannel)!;
    for (const route of ["broken", "throws"]) {
      const response = await expressPay(`${expressUrl}/${route}`);
      expect(response.status).to.equal(500);
      expect(response.headers.get("payment-response")).to.equal(null);
      await response.arrayBuffer();
      expect(served.get(`express /${route}`)).to.equal(1);
    }
    const ledgerAfter = server.store.getLedger(expressChannel)!;
    expect(ledgerAfter.chargedTotal).to.equal(ledgerBefore.chargedTotal);
    expect(ledgerAfter.highestAmount).to.equal(ledgerBefore.highestAmount);
    expect(server.engine.channelView(expressChannel)).to.deep.include({
      chargedTotal: ledgerBefore.chargedTotal.toString(),
      highestAmount: ledgerBefore.highestAmount.toString(),
    });
    // The channel keeps working; later vouchers absorb the amounts the failed requests signed.
    expressCharged += await payMany(expressPay, `${expressUrl}/weather`, 8, 1);
    expect(ledgerCharged(expressChannel)).to.equal(expressCharged);
  });

  it("an @x402/hono app with the plug-in is paid the same way, and its failing handler costs nothing", async () => {
    const client = payingClient();
    const honoPay = client.pay;
    honoCharged += await payMany(honoPay, `${honoUrl}/weather`, 20, 10);
    honoChannel = client.channelId();
    expect(honoChannel).not.to.equal(expressChannel);
    const before = ledgerCharged(honoChannel);
    const failed = await honoPay(`${honoUrl}/broken`);
    expect(failed.status).to.equal(503);
    await failed.arrayBuffer();
    expect(ledgerCharged(honoChannel)).to.equal(before);
    honoCharged += await payMany(honoPay, `${honoUrl}/weather`, 8, 1);
    expect(ledgerCharged(honoChannel)).to.equal(honoCharged);
    expect(served.get("hono /weather")).to.equal(28);
  });

  it("the paychan settler claims on-chain exactly what was charged", async () => {
    const settler = await startSettler(configFile, { env: { [PAYEE_KEY_ENV]: PAYEE_KEY }, logger: silentLogger });
    try {
      const { PaymentChannels: contract } = node.deployments!;
      const claimed = async (channelId: bigint) =>
        (
          await publicClient.readContract({
            address: contract,
            abi: paymentChannelsAbi,
            functionName: "getChannel",
            args: [channelId],
          })
        ).claimed;
      const deadline = Date.now() + 60_000;
      while ((await claimed(expressChannel)) === 0n || (await claimed(honoChannel)) === 0n) {
        if (Date.now() > deadline) throw new Error("the settler claimed nothing within 60 s");
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      // Each channel's last requests went one at a time, which brings the best voucher (what a
      // claim collects) back to the charged total after the bursts and the failed requests.
      expect(await claimed(expressChannel)).to.equal(expressCharged);
      expect(await claimed(honoChannel)).to.equal(honoCharged);
    } finally {
      await settler.stop();
    }
  });
});
