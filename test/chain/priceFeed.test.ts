import { expect } from "chai";
import { artifacts } from "hardhat";
import { createWalletClient, http, type Abi, type Address, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { createChainClient } from "../../src/chain/client";
import { PriceFeedReader } from "../../src/chain/priceFeed";
import { ChannelWatcher, type WatcherStore } from "../../src/chain/watcher";
import { parseRate } from "../../src/protocol/price";
import { feedRate, fixedRate } from "../../src/server/rateSource";
import type { ChannelRecord } from "../../src/protocol/channel";
import { startHardhatNode, startRpcProxy, jsonRpcError, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/** An empty in-memory watcher store: these tests watch feeds, not channels. */
function emptyStore(): WatcherStore {
  const cursors = new Map<string, bigint>();
  return {
    upsertChannel: (_: ChannelRecord) => undefined,
    getChannel: () => undefined,
    loadChannels: () => [],
    getCursor: (key) => cursors.get(key),
    setCursor: (key, block) => void cursors.set(key, block),
  };
}

describe("price feed reader and rate sources (hardhat node)", function () {
  this.timeout(120_000);
  let node: HardhatNode;
  let client: PublicClient;
  let feed: Address;
  let feedAbi: Abi;
  const account = privateKeyToAccount(HARDHAT_KEYS[0]);

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    client = createChainClient({ url: node.url });
    feed = node.deployments!.MockEurUsdFeed;
    feedAbi = (await artifacts.readArtifact("MockPriceFeed")).abi as Abi;
  });

  after(async () => {
    await node?.stop();
  });

  async function setAnswer(answer: bigint, updatedAt?: bigint): Promise<void> {
    const wallet = createWalletClient({ account, chain: hardhat, transport: http(node.url) });
    const hash = await wallet.writeContract({
      address: feed,
      abi: feedAbi,
      functionName: updatedAt === undefined ? "setAnswer" : "setAnswerAt",
      args: updatedAt === undefined ? [answer] : [answer, updatedAt],
    });
    await client.waitForTransactionReceipt({ hash });
  }

  async function chainNow(): Promise<number> {
    return Number((await client.getBlock()).timestamp);
  }

  it("reads the deployed mock EUR / USD feed: answer, decimals and updatedAt", async () => {
    const reader = new PriceFeedReader(client, feed);
    expect(reader.latest()).to.equal(undefined);
    await reader.refresh();
    const reading = reader.latest()!;
    expect(reading).to.include({ answer: 108_000_000n, decimals: 8 });
    expect(reading.updatedAt).to.be.within(1, await chainNow());
    expect(feedRate(reader, 3600).current(await chainNow())).to.deep.equal({ ok: true, rate: parseRate("1.08") });
  });

  it("the chain watcher refreshes its feeds on each poll, so a moved rate is seen without a request-path read", async () => {
    const reader = new PriceFeedReader(client, feed);
    const watcher = new ChannelWatcher({
      client,
      contract: node.deployments!.PaymentChannels,
      payee: account.address,
      chainId: 31337,
      confirmations: 0,
      store: emptyStore(),
      priceFeeds: [reader],
    });
    await watcher.syncNow();
    expect(reader.latest()?.answer).to.equal(108_000_000n);
    await setAnswer(113_400_000n);
    expect(reader.latest()?.answer, "not read until the next poll").to.equal(108_000_000n);
    await watcher.syncNow();
    expect(reader.latest()?.answer).to.equal(113_400_000n);
    expect(feedRate(reader, 3600).current(await chainNow())).to.deep.equal({ ok: true, rate: parseRate("1.134") });
    await watcher.stop();
    await setAnswer(108_000_000n);
  });

  it("a stale, non-positive or never-read feed gives rate_unavailable with the cause", async () => {
    const reader = new PriceFeedReader(client, feed);
    const source = feedRate(reader, 600);
    expect(source.current(await chainNow())).to.deep.include({ ok: false, reason: "rate_unavailable" });

    const now = BigInt(await chainNow());
    await setAnswer(108_000_000n, now - 601n);
    await reader.refresh();
    const stale = source.current(Number(now) + 1);
    expect(stale).to.deep.include({ ok: false, reason: "rate_unavailable" });
    expect(stale.ok === false && stale.detail).to.match(/last updated 60\d s ago, more than its 600 s maximum age/);
    // Exactly at the maximum age it still quotes.
    expect(source.current(Number(now) - 1)).to.deep.equal({ ok: true, rate: parseRate("1.08") });

    await setAnswer(0n);
    await reader.refresh();
    expect(source.current(await chainNow())).to.deep.include({ ok: false, reason: "rate_unavailable" });
    await setAnswer(108_000_000n);
    await reader.refresh();
    expect(source.current(await chainNow())).to.deep.equal({ ok: true, rate: parseRate("1.08") });
  });

  it("an unreadable feed keeps its last reading, which ages into staleness", async () => {
    const proxy = await startRpcProxy(node.url);
    try {
      const reader = new PriceFeedReader(createChainClient({ url: proxy.url, retryCount: 0 }), feed);
      await reader.refresh();
      const first = reader.latest()!;
      proxy.setFault((call) => jsonRpcError(call, -32000, "provider down"));
      await reader.refresh();
      expect(reader.lastError()?.message).to.match(/provider down/);
      expect(reader.latest()).to.equal(first);
      const source = feedRate(reader, 60);
      expect(source.current(first.updatedAt + 60).ok).to.equal(true);
      expect(source.current(first.updatedAt + 61)).to.deep.include({ ok: false, reason: "rate_unavailable" });
    } finally {
      await proxy.stop();
    }
  });

  it("a fixed rate is always available and must be positive", () => {
    expect(fixedRate(parseRate("1")).current(0)).to.deep.equal({ ok: true, rate: 10n ** 18n });
    expect(() => fixedRate(0n)).to.throw(RangeError);
  });
});
