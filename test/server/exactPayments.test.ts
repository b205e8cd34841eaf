import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { x402Client } from "@x402/core/client";
import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme as ExactEvmFacilitatorScheme } from "@x402/evm/exact/facilitator";
import type { PaymentPayload, PaymentRequired, PaymentRequirements } from "@x402/core/types";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import {
  createWalletClient,
  http as httpTransport,
  publicActions,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { createChainClient } from "../../src/chain/client";
import { TransactionSender } from "../../src/chain/sender";
import { decodeExactPayment, type DecodedExactPayment } from "../../src/protocol/exact";
import { ExactPayments } from "../../src/server/exactPayments";
import { FacilitatorExactSettler, LocalExactSettler, type ExactSettler } from "../../src/server/exactSettler";
import { openSqliteStore, type SqliteStore } from "../../src/store/sqlite";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * The `exact` fallback's settlement on a real `hardhat node`: an authorization made by @x402/evm's
 * own exact client scheme is verified offline, recorded, submitted with the relayer key and
 * served only once mined; the same authorization is refused afterwards, also by a server reopened
 * on the same SQLite file; an authorization the token would refuse (no balance) costs no gas and
 * leaves nothing recorded. The hosted alternative is checked against x402's own facilitator
 * (@x402/core's x402Facilitator with @x402/evm's exact facilitator scheme) served over HTTP.
 */

type FacilitatorSignerClient = Parameters<typeof toFacilitatorEvmSigner>[0];

const NETWORK = "eip155:31337";
const PRICE = 10_000n; // $0.01
const PAYEE: Address = privateKeyToAccount(HARDHAT_KEYS[2]).address;
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const BUYER_KEY: Hex = HARDHAT_KEYS[4];

describe("exact payments: EIP-3009 settled locally (hardhat node)", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let usdc: Address;
  let dir: string;
  let store: SqliteStore;
  let settler: LocalExactSettler;
  let settled: { txHash: Hex; gasUsed?: bigint }[];

  const payments = (s: AuthorizationStoreLike = store, use: ExactSettler = settler) =>
    new ExactPayments({
      network: NETWORK,
      chainId: 31337,
      token: { address: usdc, name: "USD Coin", version: "2" },
      payee: PAYEE,
      maxTimeoutSeconds: 60,
      store: s,
      settler: use,
    });
  type AuthorizationStoreLike = ConstructorParameters<typeof ExactPayments>[0]["store"];

  /** A PaymentPayload from x402's own client for the 402 `payments` would send. */
  const officialPayload = async (buyerKey: Hex, exact: ExactPayments): Promise<PaymentPayload> => {
    // The mock token is no default x402 asset: the buyer allows it, as a real buyer would USDC.
    const client = x402Client.fromConfig({
      schemes: [{ network: NETWORK, client: new ExactEvmScheme(privateKeyToAccount(buyerKey)) }],
      spendControls: { allowedAssets: [{ network: NETWORK, asset: usdc }] },
    });
    const required: PaymentRequired = {
      x402Version: 2,
      resource: { url: "http://127.0.0.1/report" },
      accepts: [exact.offer(PRICE) as PaymentRequirements],
    };
    return client.createPaymentPayload(required);
  };

  const decode = (payload: PaymentPayload): DecodedExactPayment => {
    const decoded = decodeExactPayment(JSON.parse(JSON.stringify(payload)));
    if (!decoded?.ok) throw new Error(`not decoded: ${JSON.stringify(decoded)}`);
    return decoded.payment;
  };

  const balanceOf = (owner: Address) =>
    publicClient.readContract({ address: usdc, abi: usdcAbi, functionName: "balanceOf", args: [owner] });

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    publicClient = createChainClient({ url: node.url, chain: hardhat });
    const relayer = privateKeyToAccount(RELAYER_KEY);
    const sender = new TransactionSender({
      publicClient,
      walletClient: createWalletClient({ account: relayer, chain: hardhat, transport: httpTransport(node.url) }),
      account: relayer,
      chain: hardhat,
      confirmations: 0,
      pollIntervalMs: 50,
    });
    settled = [];
    const local = new LocalExactSettler({ publicClient, sender });
    settler = {
      async settle(payment, offer) {
        const result = await local.settle(payment, offer);
        if (result.ok) settled.push(result);
        return result;
      },
    } as LocalExactSettler;
    const buyer = privateKeyToAccount(BUYER_KEY);
    const minter = createWalletClient({ account: buyer, chain: hardhat, transport: httpTransport(node.url) });
    const hash = await minter.writeContract({
      address: usdc,
      abi: usdcAbi,
      functionName: "mint",
      args: [buyer.address, 1_000_000n],
    });
    await publicClient.waitForTransactionReceipt({ hash });
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-exact-"));
    store = openSqliteStore({ path: path.join(dir, "paychan.db") });
  });

  after(async () => {
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    await node?.stop();
  });

  it("settles an authorization from @x402/evm's exact client, mined before it answers", async () => {
    const exact = payments();
    const payload = await officialPayload(BUYER_KEY, exact);
    const before = await balanceOf(PAYEE);
    const outcome = await exact.pay(decode(payload), PRICE);
    if (!outcome.ok) throw new Error(`refused: ${outcome.reason}`);
    expect(outcome.response.success).to.equal(true);
    expect(outcome.response.network).to.equal(NETWORK);
    expect(outcome.response.payer).to.equal(privateKeyToAccount(BUYER_KEY).address);
    expect(outcome.response.amount).to.equal(PRICE.toString());
    // Mined when pay() resolved: the receipt is there, and the payee holds the money.
    const receipt = await publicClient.getTransactionReceipt({ hash: outcome.response.transaction });
    expect(receipt.status).to.equal("success");
    expect((await balanceOf(PAYEE)) - before).to.equal(PRICE);
    const recorded = store.findAuthorization(usdc, outcome.response.payer, decode(payload).authorization.nonce);
    expect(recorded?.txHash).to.equal(outcome.response.transaction.toLowerCase());
    console.log(`      gas of the payee's first exact payment (its balance was empty): ${receipt.gasUsed}`);
  });

  it("refuses a replayed authorization, also after the store is reopened, without sending anything", async () => {
    const exact = payments();
    const payload = await officialPayload(BUYER_KEY, exact);
    expect((await exact.pay(decode(payload), PRICE)).ok).to.equal(true);
    const sent = settled.length;
    console.log(`      gas of a later exact payment (transferWithAuthorization): ${settled[sent - 1].gasUsed}`);
    expect(await exact.pay(decode(payload), PRICE)).to.deep.equal({ ok: false, reason: "authorization_reused" });

    await store.close();
    store = openSqliteStore({ path: path.join(dir, "paychan.db") });
    expect(await payments().pay(decode(payload), PRICE)).to.deep.equal({ ok: false, reason: "authorization_reused" });
    expect(settled.length).to.equal(sent);
  });

  it("refuses concurrent copies of one authorization: one transfer, one payment", async () => {
    const exact = payments();
    const payload = await officialPayload(BUYER_KEY, exact);
    const before = await balanceOf(PAYEE);
    const outcomes = await Promise.all([1, 2, 3].map(() => exact.pay(decode(payload), PRICE)));
    expect(outcomes.filter((o) => o.ok)).to.have.length(1);
    expect(outcomes.filter((o) => !o.ok).map((o) => !o.ok && o.reason)).to.deep.equal([
      "authorization_reused",
      "authorization_reused",
    ]);
    expect((await balanceOf(PAYEE)) - before).to.equal(PRICE);
  });

  it("refuses an authorization the token would refuse (no balance): transfer_failed, no gas, not recorded", async () => {
    const exact = payments();
    const broke = generatePrivateKey();
    const payload = await officialPayload(broke, exact);
    const payment = decode(payload);
    const relayerNonce = await publicClient.getTransactionCount({ address: privateKeyToAccount(RELAYER_KEY).address });
    expect(await exact.pay(payment, PRICE)).to.deep.equal({ ok: false, reason: "transfer_failed" });
    expect(await publicClient.getTransactionCount({ address: privateKeyToAccount(RELAYER_KEY).address })).to.equal(
      relayerNonce,
    );
    expect(store.findAuthorization(usdc, payment.authorization.from, payment.authorization.nonce)).to.equal(undefined);
  });

  it("refuses an authorization already used on-chain (submitted elsewhere) as authorization_reused", async () => {
    const exact = payments();
    const payload = await officialPayload(BUYER_KEY, exact);
    // Settled by this server's settler directly, bypassing the store: the chain alone knows.
    const first = await settler.settle(decode(payload), exact.offer(PRICE));
    expect(first.ok).to.equal(true);
    expect(await exact.pay(decode(payload), PRICE)).to.deep.equal({ ok: false, reason: "authorization_reused" });
  });

  it("checks the terms offline before the store or the chain: price, payee, token domain", async () => {
    const exact = payments();
    const sent = settled.length;
    const cheap = await officialPayload(BUYER_KEY, exact);
    expect(await exact.pay(decode(cheap), PRICE + 1n)).to.deep.equal({ ok: false, reason: "insufficient_amount" });
    const elsewhere = new ExactPayments({
      network: NETWORK,
      chainId: 31337,
      token: { address: usdc, name: "USD Coin", version: "2" },
      payee: privateKeyToAccount(HARDHAT_KEYS[5]).address,
      maxTimeoutSeconds: 60,
      store,
      settler,
    });
    expect(await elsewhere.pay(decode(cheap), PRICE)).to.deep.equal({ ok: false, reason: "wrong_payee" });
    const otherDomain = new ExactPayments({
      network: NETWORK,
      chainId: 31337,
      token: { address: usdc, name: "USDC", version: "2" },
      payee: PAYEE,
      maxTimeoutSeconds: 60,
      store,
      settler,
    });
    expect(await otherDomain.pay(decode(cheap), PRICE)).to.deep.equal({ ok: false, reason: "invalid_signature" });
    expect(settled.length).to.equal(sent);
  });

  it("settles through a hosted x402 facilitator instead (x402's own, over HTTP), replays refused", async () => {
    const facilitatorAccount = privateKeyToAccount(HARDHAT_KEYS[5]);
    const wallet = createWalletClient({
      account: facilitatorAccount,
      chain: hardhat,
      transport: httpTransport(node.url),
    }).extend(publicActions);
    const facilitator = new x402Facilitator().register(
      NETWORK,
      new ExactEvmFacilitatorScheme(
        // viem's verifyTypedData is typed with its block options as alternatives, which the
        // signer's narrower parameter type does not spell; at run time it is the same call.
        toFacilitatorEvmSigner({
          ...wallet,
          address: facilitatorAccount.address,
        } as unknown as FacilitatorSignerClient),
      ),
    );
    const calls: string[] = [];
    const server = http.createServer((req, res) => {
      let text = "";
      req.on("data", (chunk: Buffer) => (text += chunk.toString()));
      req.on("end", () => {
        calls.push(`${req.method} ${req.url}`);
        const body = JSON.parse(text) as { paymentPayload: PaymentPayload; paymentRequirements: PaymentRequirements };
        facilitator.settle(body.paymentPayload, body.paymentRequirements).then(
          (settled) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(settled)),
          (error: unknown) => res.writeHead(500).end(String(error)),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/facilitator`;
      const exact = payments(store, new FacilitatorExactSettler({ url }));
      const payload = await officialPayload(BUYER_KEY, exact);
      const before = await balanceOf(PAYEE);
      const outcome = await exact.pay(decode(payload), PRICE);
      if (!outcome.ok) throw new Error(`refused: ${outcome.reason}`);
      const receipt = await publicClient.getTransactionReceipt({ hash: outcome.response.transaction });
      expect(receipt.status).to.equal("success");
      expect(receipt.from.toLowerCase()).to.equal(facilitatorAccount.address.toLowerCase());
      expect((await balanceOf(PAYEE)) - before).to.equal(PRICE);
      expect(await exact.pay(decode(payload), PRICE)).to.deep.equal({ ok: false, reason: "authorization_reused" });
      expect(calls).to.deep.equal(["POST /facilitator/settle"]);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
