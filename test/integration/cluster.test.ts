import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  parseEventLogs,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { claimsOfEvent, type PaymentChannelsEvent } from "../../src/chain/events";
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
import { voucherDomain, voucherTypedData, type VoucherDomain } from "../../src/protocol/voucher";
import { PAYEE_KEY_ENV } from "../../src/shared/config";
import { BACKEND_HEADER, startInstance, startRoundRobin, type Instance, type RoundRobin } from "../helpers/cluster";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { freePort, startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { requirePg, testSchema, type TestSchema } from "../helpers/pgSchema";
import { validSettleResponse } from "../helpers/x402Wire";

/**
 * Three `paychan server` processes on one PostgreSQL database behind a round-robin proxy, on a real
 * `hardhat node`: one channel paid from many requests at once across the instances, every request
 * repeated on another instance, an instance SIGKILLed under load, and the instance holding the
 * settler duty SIGKILLed right after the payer asked to withdraw. Throughout: no voucher charged
 * twice, every acknowledged payment in the database, and in the end the amount claimed on-chain
 * equal to what was charged, claimed before the payer could exit.
 */

const PAYER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const CHAIN_ID = 31337;
const PRICE = 1_000n; // "$0.001"
const DEPOSIT = 100_000_000n;
const WITHDRAW_DELAY = 3_600;
const LEASE_MS = 2_000;

/** One payment the client was told succeeded. */
interface Ack {
  readonly amount: bigint;
  readonly response: SettleResponse;
  readonly backend: number;
}

describe("paychan cluster: 3 instances on one PostgreSQL (hardhat node, real HTTP)", function () {
  this.timeout(180_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let schema: TestSchema;
  let db: pg.Client;
  let dir: string;
  let upstream: http.Server;
  let instances: Instance[] = [];
  let proxy: RoundRobin;
  let offer: ChannelOffer;
  let domain: VoucherDomain;
  let contract: Address;
  let channelId: bigint;
  const session = privateKeyToAccount(generatePrivateKey());
  const payer = privateKeyToAccount(PAYER_KEY);
  const acks = new Map<bigint, Ack>();
  let nextAmount = 0n;
  /** Attempts no instance answered (connection lost, 502), each repeated. */
  let unanswered = 0;

  async function send(from: PrivateKeyAccount, to: Address, abi: unknown, functionName: string, args: unknown[]) {
    const wallet = createWalletClient({ account: from, chain: hardhat, transport: httpTransport(node.url) });
    const hash = await wallet.writeContract({ address: to, abi, functionName, args } as unknown as Parameters<
      typeof wallet.writeContract
    >[0]);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    expect(receipt.status).to.equal("success");
    return receipt;
  }

  async function header(amount: bigint): Promise<string> {
    const signature = await session.signTypedData(voucherTypedData(domain, { channelId, cumulativeAmount: amount }));
    return encodePaymentSignature(offer, { channelId: channelIdHex(channelId), amount: amount.toString(), signature });
  }

  /** One attempt; undefined when the instance failed before answering (connection lost, 502). */
  async function attempt(baseUrl: string, paymentHeader: string) {
    try {
      const res = await fetch(`${baseUrl}/weather`, { headers: { [PAYMENT_SIGNATURE_HEADER]: paymentHeader } });
      await res.arrayBuffer();
      if (res.status === 502) return undefined;
      const paid = res.headers.get(PAYMENT_RESPONSE_HEADER);
      const refused = res.headers.get(PAYMENT_REQUIRED_HEADER);
      return {
        status: res.status,
        backend: Number(res.headers.get(BACKEND_HEADER) ?? -1),
        paid,
        response: paid ? decodeHeader<SettleResponse>(paid) : undefined,
        error: refused ? decodeHeader<PaymentRequired>(refused).error : undefined,
      };
    } catch {
      return undefined;
    }
  }

  /** Pays `amount` through the proxy, repeating the same voucher until an instance answers. */
  async function pay(amount: bigint): Promise<Ack> {
    const h = await header(amount);
    for (let i = 0; i < 8; i++) {
      const answer = await attempt(proxy.url, h);
      if (answer === undefined) {
        unanswered++;
        continue;
      }
      expect(answer.status, `voucher ${amount}: ${answer.error}`).to.equal(200);
      const ack = { amount, response: answer.response as SettleResponse, backend: answer.backend };
      const earlier = acks.get(amount);
      // Any repeat that was answered must carry the first answer's receipt.
      if (earlier) expect(ack.response.extra.receipt).to.deep.equal(earlier.response.extra.receipt);
      acks.set(amount, earlier ?? ack);
      return ack;
    }
    throw new Error(`voucher ${amount} was never answered`);
  }

  const amounts = (n: number) => Array.from({ length: n }, () => (nextAmount += PRICE));

  /** The database's view: the ledger and the stored vouchers of the channel. */
  async function stored() {
    const ledger = await db.query<{ charged_total: string; highest_amount: string }>(
      "SELECT charged_total, highest_amount FROM ledgers WHERE channel_id = $1",
      [channelId.toString()],
    );
    const vouchers = await db.query<{ amount: string; charge: string; receipt: string }>(
      "SELECT amount, charge, receipt FROM vouchers WHERE channel_id = $1",
      [channelId.toString()],
    );
    return {
      charged: BigInt(ledger.rows[0]?.charged_total ?? 0),
      highest: BigInt(ledger.rows[0]?.highest_amount ?? 0),
      vouchers: new Map(vouchers.rows.map((r) => [BigInt(r.amount), r])),
    };
  }

  /** Every acknowledged payment is stored with the receipt it was acknowledged with, and only those. */
  async function expectLedgerMatchesAcks(): Promise<void> {
    const db = await stored();
    expect(db.vouchers.size, "vouchers stored").to.equal(acks.size);
    let charged = 0n;
    for (const [amount, ack] of acks) {
      const row = db.vouchers.get(amount);
      expect(row, `acknowledged voucher ${amount} is stored`).to.not.equal(undefined);
      expect(JSON.parse(row?.receipt ?? "null")).to.deep.equal(ack.response.extra.receipt);
      charged += BigInt(ack.response.amount);
    }
    expect(db.charged, "charged total = sum of acknowledged charges").to.equal(charged);
    expect(db.charged).to.be.at.most(db.highest);
    const totals = [...acks.values()].map((a) => a.response.extra.chargedTotal);
    expect(new Set(totals).size, "no two payments share a charged total").to.equal(totals.length);
  }

  async function leaseHolderPid(): Promise<number | undefined> {
    const { rows } = await db.query<{ holder: string }>(
      "SELECT holder FROM leases WHERE name LIKE 'settler:%' AND expires_at > now()",
    );
    return rows[0] ? Number(rows[0].holder.split(":").at(-2)) : undefined;
  }

  before(async function () {
    const baseUrl = requirePg(this, "the cluster tests");
    schema = testSchema(baseUrl, "paychan_cluster");
    node = await startHardhatNode({ deploy: true });
    const usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    domain = voucherDomain(CHAIN_ID, contract);
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    upstream = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}'));
    });
    await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-cluster-"));

    await send(payer, usdc, usdcAbi, "mint", [payer.address, DEPOSIT]);
    await send(payer, usdc, usdcAbi, "approve", [contract, DEPOSIT]);
    const payee = privateKeyToAccount(PAYEE_KEY).address;
    const opened = await send(payer, contract, paymentChannelsAbi, "open", [
      payee,
      usdc,
      session.address,
      WITHDRAW_DELAY,
      DEPOSIT,
    ]);
    channelId = parseEventLogs({ abi: paymentChannelsAbi, eventName: "ChannelOpened", logs: opened.logs })[0].args
      .channelId;

    const config = {
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      network: "localhost",
      rpcUrl: node.url,
      contract,
      token: { address: usdc, decimals: 6, name: "USD Coin", version: "2" },
      routes: { "GET /weather": "$0.001" },
      minDeposit: "$1",
      minWithdrawDelay: WITHDRAW_DELAY,
      pollIntervalMs: 200,
      database: { url: schema.url, leaseMs: LEASE_MS },
      // Only a withdrawal makes the settler claim here (routine thresholds out of reach).
      settler: { intervalSec: 1, minUnclaimed: "$1000" },
    };
    const env = { ...process.env, [PAYEE_KEY_ENV]: PAYEE_KEY, PAYCHAN_LOG_LEVEL: "warn" };
    // The first instance migrates the schema; the others start together.
    instances = [await startInstance(0, path.join(dir, "paychan"), config, await freePort(), env)];
    instances.push(
      ...(await Promise.all(
        [1, 2].map(async (i) => startInstance(i, path.join(dir, "paychan"), config, await freePort(), env)),
      )),
    );
    proxy = await startRoundRobin(() => instances);
    db = new pg.Client({ connectionString: schema.url });
    await db.connect();

    const res = await fetch(`${proxy.url}/weather`);
    expect(res.status).to.equal(402);
    offer = decodeHeader<PaymentRequired>(res.headers.get(PAYMENT_REQUIRED_HEADER) as string).accepts[0];
  });

  after(async function () {
    for (const instance of instances) await instance.kill().catch(() => undefined);
    await proxy?.close();
    if (upstream) {
      upstream.closeAllConnections();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
    await db?.end().catch(() => undefined);
    await schema?.drop();
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed") {
      for (const i of instances) console.log(`--- instance ${i.index} (pid ${i.pid}):\n${i.output().slice(-3000)}`);
    }
  });

  it("serves 64 concurrent payments on one channel across the instances, and each repeat on another instance gets the same receipt", async () => {
    const batch = amounts(64);
    const headers = await Promise.all(batch.map((amount) => header(amount)));
    const answers = await Promise.all(headers.map((h) => attempt(proxy.url, h)));
    const served = new Set<number>();
    for (const [i, answer] of answers.entries()) {
      expect(answer?.status, `voucher ${batch[i]}: ${answer?.error}`).to.equal(200);
      served.add(answer?.backend ?? -1);
      acks.set(batch[i], { amount: batch[i], response: answer?.response as SettleResponse, backend: answer!.backend });
    }
    expect([...served].sort()).to.deep.equal([0, 1, 2]);
    // x402's SettleResponse, as @x402/core reads it: this request's charge, no transaction.
    for (const answer of answers) {
      const response = await validSettleResponse(answer!.paid as string);
      expect(response).to.include({ success: true, transaction: "", amount: offer.amount });
    }

    const repeats = await Promise.all(headers.map((h, i) => attempt(instances[(answers[i]!.backend + 1) % 3].url, h)));
    for (const [i, repeat] of repeats.entries()) {
      expect(repeat?.status).to.equal(200);
      expect(repeat?.backend).to.not.equal(answers[i]?.backend);
      // The same charge and receipt; only "remaining" is the channel's state now.
      const { extra: againExtra, ...again } = repeat?.response as SettleResponse;
      const { extra: firstExtra, ...first } = answers[i]?.response as SettleResponse;
      const { remaining: _now, ...againFigures } = againExtra;
      const { remaining: _then, ...firstFigures } = firstExtra;
      expect({ ...again, ...againFigures }, `repeat of voucher ${batch[i]}`).to.deep.equal({
        ...first,
        ...firstFigures,
      });
    }
    const totals = answers.map((a) => BigInt(a!.response!.extra.chargedTotal)).sort((a, b) => (a < b ? -1 : 1));
    expect(totals).to.deep.equal(batch);
    await expectLedgerMatchesAcks();
  });

  it("loses no acknowledged payment and charges none twice when an instance is SIGKILLed under load", async () => {
    const leader = await leaseHolderPid();
    const victim = instances.find((i) => i.pid !== leader) as Instance;
    const queue = amounts(150);
    let done = 0;
    let killed: Promise<void> | undefined;
    const worker = async () => {
      for (let amount = queue.shift(); amount !== undefined; amount = queue.shift()) {
        await pay(amount);
        if (++done === 40) killed = victim.kill("SIGKILL");
      }
    };
    await Promise.all(Array.from({ length: 12 }, worker));
    await killed;
    expect(victim.alive()).to.equal(false);
    expect(done).to.equal(150);
    await expectLedgerMatchesAcks();
    console.log(`      kill -9 under load: 150 payments, ${unanswered} attempts unanswered and repeated`);
  });

  it("claims everything charged before the exit when the settler's instance dies right after a withdrawal request", async () => {
    const charged = (await stored()).charged;
    let leader: number | undefined;
    for (let i = 0; i < 50 && leader === undefined; i++) {
      leader = await leaseHolderPid();
      if (leader === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const settlerInstance = instances.find((i) => i.pid === leader && i.alive());
    expect(settlerInstance, "a live instance holds the settler duty").to.not.equal(undefined);

    const requested = await send(payer, contract, paymentChannelsAbi, "requestWithdrawal", [channelId]);
    await settlerInstance!.kill("SIGKILL");
    const block = await publicClient.getBlock({ blockNumber: requested.blockNumber });
    const readyAt = Number(block.timestamp) + WITHDRAW_DELAY;

    // Another instance takes the duty over and claims at once.
    const deadline = Date.now() + 30_000;
    let claimed = 0n;
    while (Date.now() < deadline) {
      const channel = (await publicClient.readContract({
        address: contract,
        abi: paymentChannelsAbi,
        functionName: "getChannel",
        args: [channelId],
      })) as { claimed: bigint; withdrawReadyAt: number };
      expect(channel.withdrawReadyAt).to.equal(readyAt);
      claimed = channel.claimed;
      if (claimed === charged) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(claimed, "claimed on-chain == charged").to.equal(charged);
    const logs = (
      await publicClient.getContractEvents({
        address: contract,
        abi: paymentChannelsAbi,
        eventName: "ChannelsClaimed",
        fromBlock: requested.blockNumber,
      })
    ).filter((log) => claimsOfEvent(log as PaymentChannelsEvent).some((c) => c.channelId === channelId));
    expect(logs.length, "a claim batch for the channel after the request").to.be.at.least(1);
    const claimBlock = await publicClient.getBlock({ blockNumber: logs[logs.length - 1].blockNumber });
    expect(Number(claimBlock.timestamp)).to.be.below(readyAt);
    const newLeader = await leaseHolderPid();
    expect(newLeader).to.not.equal(settlerInstance!.pid);
    expect(instances.some((i) => i.pid === newLeader && i.alive())).to.equal(true);

    // The ledger still matches the acknowledgements.
    await expectLedgerMatchesAcks();
    console.log(
      `      cluster: ${acks.size} payments acknowledged, ${charged} charged, ${claimed} claimed on-chain, ` +
        `0 charged twice, 0 lost`,
    );
  });
});
