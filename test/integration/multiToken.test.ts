import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { artifacts } from "hardhat";
import { createWalletClient, http as httpTransport, type Abi, type Address, type Hex, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { createChainClient } from "../../src/chain/client";
import { TransactionSender } from "../../src/chain/sender";
import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { channelKey, createPayingFetch, memoryStateStore, openChannel, termsFromOffer } from "../../src/client";
import { createChannelScheme } from "../../src/client/x402";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { parseRate } from "../../src/protocol/price";
import { parseQuote, signQuote } from "../../src/protocol/quote";
import { voucherDomain, voucherTypedData } from "../../src/protocol/voucher";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { parseConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { Settler } from "../../src/settler/settler";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * Routes priced in dollars, paid in USDC or EURC, against a real `hardhat node`: the mock tokens
 * and the mock EUR / USD feed of the deploy scripts, the server's chain watcher reading the feed,
 * channels opened gaslessly through the relay in each token, real HTTP, and one batch claim.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const FEED_KEY: Hex = HARDHAT_KEYS[4];
const DEPOSIT = 5_000_000n;

describe("prices in dollars, paid in USDC or EURC at a quoted rate (hardhat node)", function () {
  this.timeout(180_000);
  let node: HardhatNode;
  let client: PublicClient;
  let dir: string;
  let api: http.Server;
  let server: PaymentServer;
  let baseUrl: string;
  let usdc: Address;
  let eurc: Address;
  let feed: Address;
  let feedAbi: Abi;
  const session = privateKeyToAccount(generatePrivateKey());
  const buyer = privateKeyToAccount(generatePrivateKey());
  const channels: Record<"USDC" | "EURC", bigint> = { USDC: 0n, EURC: 0n };

  async function send(address: Address, abi: Abi, functionName: string, args: unknown[], key: Hex): Promise<void> {
    const wallet = createWalletClient({
      account: privateKeyToAccount(key),
      chain: hardhat,
      transport: httpTransport(node.url),
    });
    const hash = await wallet.writeContract({ address, abi, functionName, args });
    await client.waitForTransactionReceipt({ hash });
  }

  async function chainNow(): Promise<bigint> {
    return (await client.getBlock()).timestamp;
  }

  /** The 402 of GET /weather, unpaid. */
  async function terms(): Promise<PaymentRequired> {
    const response = await fetch(`${baseUrl}/weather`);
    expect(response.status).to.equal(402);
    await response.arrayBuffer();
    return decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER)!);
  }

  function offerIn(required: PaymentRequired, asset: Address): ChannelOffer | undefined {
    return required.accepts.find((o) => o.scheme === "channel" && o.asset.toLowerCase() === asset.toLowerCase());
  }

  /** Waits until the server's watcher has read the feed and offers EURC at `amount` (or not at all). */
  async function untilEurcOffer(amount: string | undefined): Promise<PaymentRequired> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const required = await terms();
      if (offerIn(required, eurc)?.amount === amount) return required;
      if (Date.now() > deadline) throw new Error(`EURC offer never became ${amount}: ${JSON.stringify(required)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Pays GET /weather with `amount` on `channelId` under `offer`, by hand. */
  async function payBy(offer: ChannelOffer, channelId: bigint, amount: bigint): Promise<Response> {
    const signature = await session.signTypedData(
      voucherTypedData(voucherDomain(31337, offer.extra.contract), { channelId, cumulativeAmount: amount }),
    );
    const header = encodePaymentSignature(offer, {
      channelId: channelIdHex(channelId),
      amount: amount.toString(),
      signature,
    });
    return fetch(`${baseUrl}/weather`, { headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
  }

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    client = createChainClient({ url: node.url });
    ({ MockUSDC: usdc, MockEURC: eurc, MockEurUsdFeed: feed } = node.deployments!);
    feedAbi = (await artifacts.readArtifact("MockPriceFeed")).abi as Abi;
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-tokens-"));
    api = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ city: "Lisbon", tempC: 19 }));
      });
    });
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    const config = parseConfig(
      {
        upstream: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
        listen: { host: "127.0.0.1", port: 0 },
        network: "localhost",
        rpcUrl: node.url,
        contract: node.deployments!.PaymentChannels,
        tokens: [
          { address: usdc, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" },
          {
            address: eurc,
            symbol: "EURC",
            decimals: 6,
            name: "EURC",
            version: "2",
            rate: { feed, maxAgeSec: 600 },
            quoteTtlSec: 60,
            lockRate: "channel",
          },
        ],
        routes: { "GET /weather": "$0.001" },
        minWithdrawDelay: 3600,
        pollIntervalMs: 100,
        confirmations: 0,
        database: { path: path.join(dir, "paychan.db") },
      },
      { env: { [PAYEE_KEY_ENV]: PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY } },
    );
    server = await createPaymentServer(config, { logger: createLogger({ level: "warn" }) });
    baseUrl = `http://127.0.0.1:${(await server.start()).port}`;

    // A buyer with USDC and EURC and no ETH opens one channel in each, gaslessly.
    for (const token of [usdc, eurc]) {
      await send(token, usdcAbi as Abi, "mint", [buyer.address, 20_000_000n], MINTER_KEY);
    }
    const required = await untilEurcOffer("926");
    for (const [symbol, token] of [
      ["USDC", usdc],
      ["EURC", eurc],
    ] as const) {
      const opened = await openChannel({
        terms: termsFromOffer(offerIn(required, token)!, `${baseUrl}/weather`),
        funding: { kind: "relay", payer: buyer },
        signer: session.address,
        amount: DEPOSIT,
        withdrawDelay: 3600,
      });
      channels[symbol] = opened.channelId;
    }
    expect(await client.getBalance({ address: buyer.address })).to.equal(0n);
  });

  after(async () => {
    await server?.stop().catch(() => undefined);
    api?.closeAllConnections();
    await new Promise<void>((resolve) => (api ? api.close(() => resolve()) : resolve()));
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("offers one entry per token: USDC at the dollar price, EURC converted at the feed's rate with a signed quote", async () => {
    const required = await terms();
    // x402 `exact` (on with the relayer key) comes after the channel offers, in the dollar token.
    expect(required.accepts.map((o) => [o.scheme, o.asset, o.amount])).to.deep.equal([
      ["channel", usdc, "1000"],
      ["channel", eurc, "926"],
      ["exact", usdc, "1000"],
    ]);
    expect(offerIn(required, usdc)!.extra).to.not.have.property("quote");
    const quote = offerIn(required, eurc)!.extra.quote!;
    expect(parseQuote(quote)).to.deep.include({ token: eurc, rate: parseRate("1.08"), channelId: 0n });
    expect(offerIn(required, eurc)!.extra).to.include({ name: "EURC", version: "2", decimals: 6 });
  });

  it("a rate that moves 5% between quote and payment: the buyer is charged at the quote", async () => {
    const quoted = offerIn(await terms(), eurc)!;
    expect(quoted.amount).to.equal("926");
    await send(feed, feedAbi, "setAnswer", [113_400_000n], FEED_KEY); // 1.08 → 1.134 (+5%)
    const moved = offerIn(await untilEurcOffer("882"), eurc)!;
    expect(parseQuote(moved.extra.quote)!.rate).to.equal(parseRate("1.134"));

    const old = await payBy(quoted, channels.EURC, 926n);
    expect(old.status).to.equal(200);
    await old.arrayBuffer();
    const paid = decodeHeader<SettleResponse>(old.headers.get(PAYMENT_RESPONSE_HEADER)!);
    expect(paid.amount).to.equal("926");
    expect(paid.extra).to.include({ asset: eurc, rate: parseRate("1.08").toString(), chargedTotal: "926" });

    const fresh = await payBy(moved, channels.EURC, 926n + 882n);
    expect(fresh.status).to.equal(200);
    await fresh.arrayBuffer();
    expect(decodeHeader<SettleResponse>(fresh.headers.get(PAYMENT_RESPONSE_HEADER)!)).to.deep.include({
      amount: "882",
    });
    await send(feed, feedAbi, "setAnswer", [108_000_000n], FEED_KEY);
    await untilEurcOffer("926");
  });

  it("an expired quote is refused with quote_expired and a fresh quote; the client pays again under it", async () => {
    const offer = offerIn(await terms(), eurc)!;
    const expired = {
      ...offer,
      extra: {
        ...offer.extra,
        quote: signQuote(PAYEE_KEY, 31337, offer.extra.contract, {
          ...parseQuote(offer.extra.quote)!,
          expiry: Math.floor(Date.now() / 1000) - 1, // the server's clock decides expiry
        }),
      },
    };
    const ledger = server.store.getLedger(channels.EURC)!;
    const refused = await payBy(expired, channels.EURC, ledger.highestAmount + 926n);
    expect(refused.status).to.equal(402);
    const body = (await refused.json()) as PaymentRequired;
    expect(body.error).to.equal("quote_expired");
    const requote = offerIn(body, eurc)!.extra.quote!;
    expect(parseQuote(requote)!.expiry).to.be.greaterThan(Date.now() / 1000);
    expect(server.store.getLedger(channels.EURC)!.chargedTotal, "nothing charged").to.equal(ledger.chargedTotal);

    // The paying fetch's first 402 is doctored to carry the expired quote: it pays under it,
    // gets quote_expired, and pays the same request again under the fresh quote.
    let doctored = false;
    const fetchWithStaleTerms: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (doctored || response.status !== 402) return response;
      doctored = true;
      await response.arrayBuffer();
      const required = decodeHeader<PaymentRequired>(response.headers.get(PAYMENT_REQUIRED_HEADER)!);
      const stale = { ...required, accepts: required.accepts.map((o) => (o.asset === eurc ? expired : o)) };
      const encoded = Buffer.from(JSON.stringify(stale)).toString("base64");
      return new Response(JSON.stringify(stale), { status: 402, headers: { [PAYMENT_REQUIRED_HEADER]: encoded } });
    };
    // The client knows the channel's state (as it would from its own earlier payments).
    const synced = memoryStateStore();
    synced.load().channels[channelKey(offer.network, offer.extra.contract, channels.EURC)] = {
      channelId: channelIdHex(channels.EURC),
      signedMax: ledger.highestAmount.toString(),
      chargedKnown: ledger.chargedTotal.toString(),
      deposit: DEPOSIT.toString(),
      receipts: 2,
    };
    const pay = createPayingFetch(fetchWithStaleTerms, {
      sessionAccount: session,
      channel: channels.EURC,
      store: synced,
      asset: eurc,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
    });
    const response = await pay(`${baseUrl}/weather`);
    expect(response.status).to.equal(200);
    expect(await response.json()).to.deep.equal({ city: "Lisbon", tempC: 19 });
    expect(doctored).to.equal(true);
    expect(response.payment).to.deep.include({
      requoted: true,
      resynced: false,
      asset: eurc,
      rate: parseRate("1.08"),
      charge: 926n,
      chargedTotal: ledger.chargedTotal + 926n,
    });
  });

  it("lockRate channel: the quote bound to the channel by its first payment holds after the rate moves", async () => {
    const offer = offerIn(await terms(), eurc)!;
    const ledger = server.store.getLedger(channels.EURC)!;
    const state = memoryStateStore();
    const key = channelKey(offer.network, offer.extra.contract, channels.EURC);
    state.load().channels[key] = {
      channelId: channelIdHex(channels.EURC),
      signedMax: ledger.highestAmount.toString(),
      chargedKnown: ledger.chargedTotal.toString(),
      deposit: DEPOSIT.toString(),
      receipts: 3,
    };
    const options = {
      sessionAccount: session,
      channel: channels.EURC,
      store: state,
      asset: eurc,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
    };
    const first = await createPayingFetch(fetch, options)(`${baseUrl}/weather?lock=1`);
    expect(first.status).to.equal(200);
    const bound = parseQuote(state.load().channels[key].quote)!;
    // The channel's first payment (an earlier test) bound it at 1.08, for good.
    expect(bound).to.deep.include({ channelId: channels.EURC, rate: parseRate("1.08") });
    expect(bound.expiry).to.be.greaterThan(Date.now() / 1000 + 365 * 24 * 3600);

    await send(feed, feedAbi, "setAnswer", [113_400_000n], FEED_KEY);
    await untilEurcOffer("882");
    // A new client instance sees only the new rate in its 402, and pays at the channel's rate.
    const later = await createPayingFetch(fetch, options)(`${baseUrl}/weather?lock=2`);
    expect(later.status).to.equal(200);
    expect(later.payment).to.deep.include({ charge: 926n, rate: parseRate("1.08"), resynced: false });
    await send(feed, feedAbi, "setAnswer", [108_000_000n], FEED_KEY);
    await untilEurcOffer("926");
  });

  it("EURC and USDC channels are claimed in one batch", async () => {
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channels.USDC,
      asset: usdc,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
    });
    for (let i = 0; i < 3; i++) expect((await pay(`${baseUrl}/weather?i=${i}`)).payment?.charge).to.equal(1_000n);
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
      contract: node.deployments!.PaymentChannels,
      policy: { minUnclaimed: 0n, maxAgeSec: 0, maxBatchSize: 50 },
      opStack: false,
      intervalSec: 3600,
    });
    const reports = await settler.runOnce();
    expect(reports).to.have.length(1);
    expect(reports[0].channels).to.equal(2);
    for (const symbol of ["USDC", "EURC"] as const) {
      const onChain = await client.readContract({
        address: node.deployments!.PaymentChannels,
        abi: paymentChannelsAbi,
        functionName: "getChannel",
        args: [channels[symbol]],
      });
      expect(onChain.claimed, symbol).to.equal(server.store.getLedger(channels[symbol])!.chargedTotal);
    }
    const balance = async (token: Address) =>
      client.readContract({ address: token, abi: usdcAbi, functionName: "balanceOf", args: [payee.address] });
    expect(await balance(usdc)).to.equal(3_000n);
    expect(await balance(eurc)).to.equal(server.store.getLedger(channels.EURC)!.chargedTotal);
    expect(server.store.getLedger(channels.EURC)!.chargedTotal).to.equal(926n + 882n + 926n + 926n + 926n);
  });

  it("a stale feed stops quoting EURC; a quote already issued still holds", async () => {
    const offer = offerIn(await terms(), eurc)!;
    await send(feed, feedAbi, "setAnswerAt", [108_000_000n, (await chainNow()) - 601n], FEED_KEY);
    const stale = await untilEurcOffer(undefined);
    expect(stale.accepts.map((o) => [o.scheme, o.asset])).to.deep.equal([
      ["channel", usdc],
      ["exact", usdc],
    ]);

    const ledger = server.store.getLedger(channels.EURC)!;
    const held = await payBy(offer, channels.EURC, ledger.highestAmount + 926n);
    expect(held.status, "the quote issued before still holds").to.equal(200);
    await held.arrayBuffer();

    const expired = {
      ...offer,
      extra: {
        ...offer.extra,
        quote: signQuote(PAYEE_KEY, 31337, offer.extra.contract, {
          ...parseQuote(offer.extra.quote)!,
          expiry: Math.floor(Date.now() / 1000) - 1, // the server's clock decides expiry
        }),
      },
    };
    const refused = await payBy(expired, channels.EURC, ledger.highestAmount + 2n * 926n);
    expect(refused.status).to.equal(402);
    const body = (await refused.json()) as PaymentRequired;
    expect(body.error).to.equal("rate_unavailable");
    expect(body.accepts.map((o) => [o.scheme, o.asset])).to.deep.equal([
      ["channel", usdc],
      ["exact", usdc],
    ]);

    await send(feed, feedAbi, "setAnswer", [108_000_000n], FEED_KEY);
    await untilEurcOffer("926");
  });

  it("the x402 client plug-in (@x402/fetch) pays a multi-token 402 from a channel in the dollar token", async () => {
    const scheme = createChannelScheme({
      sessionAccount: privateKeyToAccount(generatePrivateKey()),
      funding: { kind: "relay", payer: buyer },
      deposit: 1_000_000n,
      // x402's spend controls pay default (USD) assets only: the local mock USDC, not EURC.
      defaultAssets: [{ network: "eip155:31337", asset: usdc, decimals: 6, symbol: "USDC" }],
    });
    const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:31337", scheme));
    for (let i = 0; i < 3; i++) {
      const response = await pay(`${baseUrl}/weather?i=${i}`);
      expect(response.status).to.equal(200);
      const paid = decodeHeader<SettleResponse>(response.headers.get(PAYMENT_RESPONSE_HEADER)!);
      expect(paid.extra.asset?.toLowerCase()).to.equal(usdc.toLowerCase());
      expect(paid.amount).to.equal("1000");
      await response.arrayBuffer();
    }
    expect(scheme.spent).to.equal(3_000n);
  });
});
