import { expect } from "chai";
import express from "express";
import type http from "node:http";
import type { AddressInfo } from "node:net";
import { validatePaymentRequired } from "@x402/core/schemas";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { createPublicClient, createWalletClient, http as httpTransport, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER } from "../../src/protocol/headers";
import type { OfferedPaymentRequired } from "../../src/server/gate";
import { paywall } from "../../src/server/paywall";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { startLocalServer, type LocalServer } from "../helpers/localServer";

/**
 * The graceful fallback end to end: a paychan server on a real `hardhat node` offers `channel`
 * and `exact` in one 402 (valid for @x402/core's own validator); the unmodified @x402/fetch
 * client with only @x402/evm's `exact` scheme pays it, the response arriving after the transfer
 * is mined; its payment header sent again is refused with `authorization_reused`. The Express
 * middleware, on the same gate, is paid the same way.
 */

const NETWORK = "eip155:31337";
const PRICE = 10_000n; // "$0.01"
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const BUYER_KEY: Hex = HARDHAT_KEYS[4];

describe("exact fallback: an exact-only @x402/fetch client pays a paychan server (hardhat node)", function () {
  this.timeout(180_000);

  let node: HardhatNode;
  let local: LocalServer;
  let usdc: Address;
  const publicClient = () => createPublicClient({ chain: hardhat, transport: httpTransport(node.url) });
  const balanceOf = (owner: Address) =>
    publicClient().readContract({ address: usdc, abi: usdcAbi, functionName: "balanceOf", args: [owner] });

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    local = await startLocalServer(
      { rpcUrl: node.url, contract: node.deployments!.PaymentChannels, token: usdc },
      { payee: PAYEE_KEY, relayer: HARDHAT_KEYS[3] },
      { routes: { "GET /report": "$0.01" }, confirmations: 0 },
      "/report",
    );
    const buyer = privateKeyToAccount(BUYER_KEY);
    const wallet = createWalletClient({ account: buyer, chain: hardhat, transport: httpTransport(node.url) });
    const hash = await wallet.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [buyer.address, 1_000_000n],
    });
    await publicClient().waitForTransactionReceipt({ hash });
  });

  after(async () => {
    await local?.stop();
    await node?.stop();
  });

  it("offers channel and exact in a 402 that @x402/core validates", async () => {
    const answer = await fetch(`${local.baseUrl}/report`);
    expect(answer.status).to.equal(402);
    const body = decodeHeader<OfferedPaymentRequired>(answer.headers.get(PAYMENT_REQUIRED_HEADER)!);
    expect(() => validatePaymentRequired(body)).not.to.throw();
    expect(body.accepts.map((offer) => offer.scheme)).to.deep.equal(["channel", "exact"]);
    expect(body.accepts[1]).to.deep.equal({
      scheme: "exact",
      network: NETWORK,
      amount: PRICE.toString(),
      asset: usdc,
      payTo: privateKeyToAccount(PAYEE_KEY).address,
      maxTimeoutSeconds: 60,
      extra: { name: "USD Coin", version: "2" },
    });
    expect(await answer.json()).to.deep.equal(body);
  });

  /** @x402/fetch with only @x402/evm's exact scheme; `sent` collects the payment headers it sends. */
  const exactOnlyFetch = (sent: string[] = []) => {
    const recording: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const header = request.headers.get(PAYMENT_SIGNATURE_HEADER);
      if (header) sent.push(header);
      return fetch(request);
    };
    const client = x402Client.fromConfig({
      schemes: [{ network: NETWORK, client: new ExactEvmScheme(privateKeyToAccount(BUYER_KEY)) }],
      // The mock token is no default x402 asset: the buyer allows it, as a real buyer would USDC.
      spendControls: { allowedAssets: [{ network: NETWORK, asset: usdc }] },
    });
    return wrapFetchWithPayment(recording, client);
  };

  it("is paid by @x402/fetch with only the exact scheme; a replay of its payment is refused", async () => {
    const sent: string[] = [];
    const payingFetch = exactOnlyFetch(sent);
    const payee = privateKeyToAccount(PAYEE_KEY).address;
    const before = await balanceOf(payee);

    const paid = await payingFetch(`${local.baseUrl}/report`);
    expect(paid.status).to.equal(200);
    expect(await paid.json()).to.deep.equal({ ok: true, path: "/report" });
    const settled = decodePaymentResponseHeader(paid.headers.get("payment-response")!);
    expect(settled.success).to.equal(true);
    expect(settled.network).to.equal(NETWORK);
    expect(settled.payer).to.equal(privateKeyToAccount(BUYER_KEY).address);
    // Mined before the response: its receipt exists and the payee holds the price.
    const receipt = await publicClient().getTransactionReceipt({ hash: settled.transaction as Hex });
    expect(receipt.status).to.equal("success");
    expect((await balanceOf(payee)) - before).to.equal(PRICE);
    expect(sent).to.have.length(1);

    const replay = await fetch(`${local.baseUrl}/report`, { headers: { [PAYMENT_SIGNATURE_HEADER]: sent[0] } });
    expect(replay.status).to.equal(402);
    const refusal = decodeHeader<OfferedPaymentRequired>(replay.headers.get(PAYMENT_REQUIRED_HEADER)!);
    expect(refusal.error).to.equal("authorization_reused");
    expect(() => validatePaymentRequired(refusal)).not.to.throw();
    await replay.arrayBuffer();
    expect((await balanceOf(payee)) - before).to.equal(PRICE);
  });

  it("pays the Express middleware on the same gate the same way", async () => {
    const app = express();
    app.use(paywall({ gate: local.server.gate, decimals: 6, routes: { "GET /express/report": "$0.01" } }));
    app.get("/express/report", (_req, res) => {
      res.json({ served: true });
    });
    const server: http.Server = await new Promise((resolve) => {
      const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
    });
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/express/report`;
      const unpaid = await fetch(url);
      expect(unpaid.status).to.equal(402);
      const offered = decodeHeader<OfferedPaymentRequired>(unpaid.headers.get(PAYMENT_REQUIRED_HEADER)!);
      expect(offered.accepts.map((offer) => offer.scheme)).to.deep.equal(["channel", "exact"]);
      await unpaid.arrayBuffer();
      const payee = privateKeyToAccount(PAYEE_KEY).address;
      const before = await balanceOf(payee);
      const paid = await exactOnlyFetch()(url);
      expect(paid.status).to.equal(200);
      expect(await paid.json()).to.deep.equal({ served: true });
      const settled = decodePaymentResponseHeader(paid.headers.get("payment-response")!);
      expect((await publicClient().getTransactionReceipt({ hash: settled.transaction as Hex })).status).to.equal(
        "success",
      );
      expect((await balanceOf(payee)) - before).to.equal(PRICE);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
