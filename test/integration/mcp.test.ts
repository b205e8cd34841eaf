import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { validatePaymentRequired } from "@x402/core/schemas";
import { expect } from "chai";
import { z } from "zod/v4";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { openChannel, PaymentLimitError, termsFromOffer } from "../../src/client";
import { chainIdOf } from "../../src/client/terms";
import {
  createPayingMcpClient,
  MCP_PAYMENT_META,
  MCP_PAYMENT_RESPONSE_META,
  paidTool,
  type PayingMcpClient,
} from "../../src/mcp";
import {
  channelIdHex,
  decodeHeader,
  encodeHeader,
  encodePaymentSignature,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import { voucherDomain, voucherTypedData } from "../../src/protocol/voucher";
import { startSettler } from "../../src/settler/main";
import { silentLogger } from "../../src/shared/log";
import {
  connectMcpClient,
  payWith,
  startPaidMcpServer,
  WEATHER_PRICE,
  type PaidMcpServer,
} from "../../scripts/demo/mcpCalls";
import { startChainServer, type ChainServer } from "../helpers/chainServer";
import { validPaymentPayload, validSettleResponse } from "../helpers/x402Wire";

/**
 * Paid MCP tool calls end to end: an MCP server of the official SDK (streamable HTTP, real HTTP)
 * whose tools are priced with `paidTool` through a paychan server's gate, the SDK's Client paying
 * them with `createPayingMcpClient` through a channel it opens gaslessly on a real `hardhat node`,
 * and the settler claiming on-chain exactly what the tool calls were charged.
 */

const PRICE = WEATHER_PRICE;
const DEPOSIT = 2_000_000n;

function text(result: CallToolResult): string {
  const first = result.content[0];
  return first?.type === "text" ? first.text : expect.fail("no text content");
}

function settleOf(result: CallToolResult): SettleResponse {
  return (
    (result._meta?.[MCP_PAYMENT_RESPONSE_META] as SettleResponse | undefined) ?? expect.fail("no payment response")
  );
}

describe("paid MCP tool calls (@modelcontextprotocol/sdk over streamable HTTP, hardhat node)", function () {
  this.timeout(120_000);

  let chain: ChainServer;
  let mcp: PaidMcpServer;
  let raw: Client;
  let client: Client;
  let buyer: PayingMcpClient;
  const session = privateKeyToAccount(generatePrivateKey());
  const runs = new Map<string, number>();
  const ran = (tool: string) => runs.get(tool) ?? 0;
  let offer: ChannelOffer;
  let channelId: bigint;

  /** A voucher for `amount` on the buyer's channel, as x402's PaymentPayload (`_meta["x402/payment"]`). */
  async function voucher(amount: bigint, tool: string, signedAmount = amount): Promise<Record<string, unknown>> {
    const signature = await session.signTypedData(
      voucherTypedData(voucherDomain(chainIdOf(offer.network), offer.extra.contract), {
        channelId,
        cumulativeAmount: signedAmount,
      }),
    );
    const header = encodePaymentSignature(
      offer,
      { channelId: channelIdHex(channelId), amount: amount.toString(), signature },
      { url: `mcp://tool/${tool}` },
    );
    validPaymentPayload(header);
    return decodeHeader<Record<string, unknown>>(header);
  }

  /** A call made with the raw SDK client, paying with `payment` when given. */
  async function callRaw(name: string, payment?: Record<string, unknown>, city = "Lisbon"): Promise<CallToolResult> {
    return (await raw.callTool({
      name,
      arguments: { city },
      ...(payment ? { _meta: { [MCP_PAYMENT_META]: payment } } : {}),
    })) as CallToolResult;
  }

  /** An amount no call has used yet, covering everything charged plus one price. */
  function freshAmount(): bigint {
    const state = buyer.channelState(channelId) ?? expect.fail("no channel state");
    return BigInt(state.signedMax) + PRICE;
  }

  before(async () => {
    chain = await startChainServer();
    // The payer holds the token and no ETH: its channel is opened through the server's relay.
    const payer = privateKeyToAccount(generatePrivateKey());
    await chain.mint(payer.address, 10_000_000n);
    const { server } = chain;

    mcp = await startPaidMcpServer({
      gate: server.gate,
      relay: server.relay,
      register: (s, gate) => {
        paidTool(s, gate, "broken", { price: "$0.001", decimals: 6 }, () => {
          runs.set("broken", ran("broken") + 1);
          return { isError: true, content: [{ type: "text", text: "upstream down" }] };
        });
        paidTool(s, gate, "throws", { price: PRICE }, () => {
          runs.set("throws", ran("throws") + 1);
          throw new Error("tool bug");
        });
        paidTool(s, gate, "counted", { price: PRICE, inputSchema: { city: z.string() } }, () => {
          runs.set("counted", ran("counted") + 1);
          return { content: [{ type: "text", text: "ok" }] };
        });
      },
    });
    raw = await connectMcpClient(mcp.url);
    client = await connectMcpClient(mcp.url);
    buyer = createPayingMcpClient(client, {
      sessionAccount: session,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
      channel: async (channelOffer) =>
        openChannel({
          // The offer's relay path is relative to the seller's HTTP origin: the MCP server's.
          terms: termsFromOffer(channelOffer, mcp.url),
          funding: { kind: "relay", payer },
          signer: session.address,
          amount: DEPOSIT,
          withdrawDelay: 86_400,
        }),
    });
  });

  after(async () => {
    await raw?.close();
    await client?.close();
    await mcp?.close();
    await chain?.stop();
  });

  it("answers an unpaid call of a priced tool with x402's PaymentRequired, as structured content and as text", async () => {
    const result = await callRaw("weather");
    expect(result.isError).to.equal(true);
    const required = validatePaymentRequired(result.structuredContent) as unknown as PaymentRequired;
    expect(JSON.parse(text(result))).to.deep.equal(result.structuredContent);
    expect(required.x402Version).to.equal(2);
    expect(required.error).to.equal(undefined);
    expect(required.resource.url).to.equal("mcp://tool/weather");
    // The relayer key turns the exact fallback on: it is offered after the channel.
    expect(required.accepts.map((o) => o.scheme)).to.deep.equal(["channel", "exact"]);
    [offer] = required.accepts;
    expect(offer.scheme).to.equal("channel");
    expect(offer.amount).to.equal(PRICE.toString());
    expect(offer.extra.relay).to.be.a("string");
    expect(settleOfMaybe(result)).to.equal(undefined);
  });

  it("pays a call: the tool runs and its result carries a SettleResponse with a verifiable receipt", async () => {
    const { result, payment } = await buyer.callTool("weather", { city: "Porto" });
    expect(result.isError ?? false).to.equal(false);
    expect(JSON.parse(text(result))).to.deep.equal({ city: "Porto", tempC: 21 });
    expect(payment?.receiptValid).to.equal(true);
    expect(payment?.charge).to.equal(PRICE);
    expect(payment?.chargedTotal).to.equal(PRICE);
    channelId = payment!.channelId;
    const settled = await validSettleResponse(encodeHeader(settleOf(result)));
    expect(settled.success).to.equal(true);
    expect(settled.amount).to.equal(PRICE.toString());
    expect(settleOf(result).extra.receipt).to.deep.equal(payment!.receipt);
    // A free tool is called straight through.
    const free = await buyer.callTool("ping", { city: "Faro" });
    expect(free.payment).to.equal(undefined);
    expect(JSON.parse(text(free.result))).to.deep.equal({ city: "Faro", tempC: 21 });
  });

  it("answers a retry of the same voucher with the same receipt, without charging it twice", async () => {
    const chargedBefore = BigInt(buyer.channelState(channelId)!.chargedKnown);
    const payment = await voucher(freshAmount(), "counted");
    const first = await callRaw("counted", payment);
    const second = await callRaw("counted", payment);
    expect(first.isError ?? false).to.equal(false);
    expect(second.isError ?? false).to.equal(false);
    expect(settleOf(second)).to.deep.equal(settleOf(first));
    expect(settleOf(first).amount).to.equal(PRICE.toString());
    expect(ran("counted")).to.equal(2);
    // With other arguments it would be another call: a reuse, and the tool does not run.
    const other = await callRaw("counted", payment, "Porto");
    expect(other.isError).to.equal(true);
    expect((other.structuredContent as unknown as PaymentRequired).error).to.equal("voucher_reused");
    expect(ran("counted")).to.equal(2);
    // The next paid call finds one charge more on the channel, not two.
    const next = await buyer.callTool("weather", { city: "Braga" });
    expect(next.payment?.chargedTotal).to.equal(chargedBefore + 2n * PRICE);
    // For another tool the same voucher is a reuse.
    const reused = await callRaw("weather", payment);
    expect(reused.isError).to.equal(true);
    expect((reused.structuredContent as unknown as PaymentRequired).error).to.equal("voucher_reused");
  });

  it("refuses a bad voucher with its reason code, and the tool does not run", async () => {
    const runsBefore = ran("counted");
    const amount = freshAmount();
    const forged = await callRaw("counted", await voucher(amount, "counted", amount + 1n));
    expect(forged.isError).to.equal(true);
    const refusal = validatePaymentRequired(forged.structuredContent) as unknown as PaymentRequired;
    expect(refusal.error).to.equal("invalid_signature");
    expect(JSON.parse(text(forged))).to.deep.equal(forged.structuredContent);
    const garbage = await callRaw("counted", { x402Version: 2, payload: "nope" });
    expect((garbage.structuredContent as unknown as PaymentRequired).error).to.be.a("string");
    expect(ran("counted")).to.equal(runsBefore);
    // The buyer is refused before anything is signed when the price is over its limit.
    const limited = createPayingMcpClient(client, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: PRICE - 1n,
      maxTotal: 1_000_000n,
    });
    let limit: unknown;
    await limited.callTool("weather", { city: "Lisbon" }).catch((error: unknown) => (limit = error));
    expect(limit).to.be.instanceOf(PaymentLimitError);
  });

  it("does not charge a tool call that fails (isError or a throw), and a retry of it fails the same", async () => {
    const broken = await buyer.callTool("broken");
    expect(broken.result.isError).to.equal(true);
    expect(text(broken.result)).to.equal("upstream down");
    expect(broken.payment?.charge).to.equal(0n);
    expect(broken.payment?.receiptValid).to.equal(true);
    const thrown = await buyer.callTool("throws");
    expect(thrown.result.isError).to.equal(true);
    expect(text(thrown.result)).to.equal("tool bug");
    expect(thrown.payment?.charge).to.equal(0n);
    const chargedBefore = thrown.payment!.chargedTotal;

    const payment = await voucher(freshAmount(), "broken");
    const first = await callRaw("broken", payment);
    const again = await callRaw("broken", payment);
    expect(settleOf(first).amount).to.equal("0");
    expect(settleOf(again).extra.receipt).to.deep.equal(settleOf(first).extra.receipt);
    expect(again.isError).to.equal(true);
    expect(ran("broken")).to.equal(2); // the buyer's call and the first raw one, not the retry
    expect(ran("throws")).to.equal(1);
    const next = await buyer.callTool("weather", { city: "Evora" });
    expect(next.payment?.chargedTotal).to.equal(chargedBefore + PRICE);
  });

  it("pays 24 concurrent calls on one channel, each charged exactly once", async () => {
    const before = buyer.spent;
    const calls = await Promise.all(Array.from({ length: 24 }, (_, i) => buyer.callTool("weather", { city: `c${i}` })));
    for (const { result, payment } of calls) {
      expect(result.isError ?? false).to.equal(false);
      expect(payment?.receiptValid).to.equal(true);
      expect(payment?.channelId).to.equal(channelId);
      expect(payment?.charge).to.equal(PRICE);
    }
    const amounts = new Set(calls.map((c) => c.payment!.amount));
    expect(amounts.size).to.equal(24);
    expect(buyer.spent - before).to.equal(24n * PRICE);
    expect(buyer.reserved).to.equal(0n);
  });

  it("a client that lost its state resynchronizes from the refusal's channel view and pays", async () => {
    const charged = BigInt(buyer.channelState(channelId)!.chargedKnown);
    const fresh = createPayingMcpClient(client, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: 10_000n,
      maxTotal: 1_000_000n,
    });
    // Its first voucher repeats the first call's (signatures are deterministic): for another tool
    // than that call's it is a reuse, refused with the channel's view.
    const { result, payment } = await fresh.callTool("counted", { city: "Coimbra" });
    expect(result.isError ?? false).to.equal(false);
    expect(payment?.resynced).to.equal(true);
    expect(payment?.chargedTotal).to.equal(charged + PRICE);
    // The first client, now behind, is brought back in step the same way.
    const { payment: again } = await buyer.callTool("weather", { city: "Aveiro" });
    expect(again?.chargedTotal).to.equal(charged + 2n * PRICE);
  });

  it("the settler claims on-chain exactly what the tool calls were charged", async () => {
    // Calls one at a time bring the best voucher back to the charged total after the burst.
    const tail = await payWith(buyer, 3, 1);
    expect(tail.paid).to.equal(3);
    const charged = BigInt(buyer.channelState(channelId)!.chargedKnown);
    const settler = await startSettler(chain.configFile, { env: chain.env, logger: silentLogger });
    try {
      const claimed = () => chain.claimed(channelId);
      const deadline = Date.now() + 60_000;
      while ((await claimed()) < charged) {
        if (Date.now() > deadline) throw new Error(`the settler claimed ${await claimed()} of ${charged} within 60 s`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(await claimed()).to.equal(charged);
    } finally {
      await settler.stop();
    }
  });
});

function settleOfMaybe(result: CallToolResult): unknown {
  return result._meta?.[MCP_PAYMENT_RESPONSE_META];
}
