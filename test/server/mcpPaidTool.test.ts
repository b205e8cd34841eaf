import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { expect } from "chai";
import { privateKeyToAccount } from "viem/accounts";
import { createPayingMcpClient, MCP_PAYMENT_META, MCP_PAYMENT_RESPONSE_META, paidTool } from "../../src/mcp";
import { decodeHeader, type PaymentRequired, type SettleResponse } from "../../src/protocol/headers";
import { harness, PAYER_KEY, payerChannel, type Harness } from "../helpers/memoryStore";

/**
 * `paidTool` and `createPayingMcpClient` against the payment gate over the SDK's in-memory
 * transport, with a store whose writes can be slowed down or failed: the tool runs only once its
 * voucher is durable, and a failed write is a `store_unavailable` refusal the client pays again.
 */

const P = 1_000n;
const CH = payerChannel();

async function connect(h: Harness, onRun: () => void): Promise<Client> {
  const server = new McpServer({ name: "test", version: "1.0.0" });
  paidTool(server, h.gate, "weather", { price: P }, () => {
    onRun();
    return { content: [{ type: "text", text: "sunny" }] };
  });
  const client = new Client({ name: "test-client", version: "1.0.0" });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  return client;
}

function payment(h: Harness, amount: bigint): Record<string, unknown> {
  return decodeHeader<Record<string, unknown>>(h.header(amount, P));
}

describe("paid MCP tools at the payment gate", () => {
  it("runs the tool only once its voucher is durable", async () => {
    const h = harness({ store: { delayMs: 30 } });
    const storedWhenRun: boolean[] = [];
    const client = await connect(h, () => storedWhenRun.push(h.store.findVoucher(CH, P) !== undefined));
    const result = (await client.callTool({
      name: "weather",
      _meta: { [MCP_PAYMENT_META]: payment(h, P) },
    })) as CallToolResult;
    expect(result.isError ?? false).to.equal(false);
    expect(storedWhenRun).to.deep.equal([true]);
    const settled = result._meta?.[MCP_PAYMENT_RESPONSE_META] as SettleResponse;
    expect(settled.amount).to.equal(P.toString());
    await client.close();
  });

  it("refuses with store_unavailable when the voucher cannot be stored, without running the tool", async () => {
    const h = harness({ store: { failRecordVoucher: true } });
    let runs = 0;
    const client = await connect(h, () => runs++);
    const result = (await client.callTool({
      name: "weather",
      _meta: { [MCP_PAYMENT_META]: payment(h, P) },
    })) as CallToolResult;
    expect(result.isError).to.equal(true);
    expect((result.structuredContent as unknown as PaymentRequired).error).to.equal("store_unavailable");
    expect(runs).to.equal(0);
    expect(BigInt(h.engine.channelView(CH)!.chargedTotal)).to.equal(0n);
    await client.close();
  });

  it("the paying client resends the same voucher after store_unavailable and is charged once", async () => {
    let failures = 1;
    const h = harness({ store: { failRecordVoucher: () => failures-- > 0 } });
    let runs = 0;
    const client = await connect(h, () => runs++);
    const paying = createPayingMcpClient(client, {
      sessionAccount: privateKeyToAccount(PAYER_KEY),
      channel: CH,
      maxPerRequest: P,
      maxTotal: 10n * P,
    });
    const { result, payment: paid } = await paying.callTool("weather");
    expect(result.isError ?? false).to.equal(false);
    expect(paid?.receiptValid).to.equal(true);
    expect(paid?.amount).to.equal(P);
    expect(h.store.recordCalls).to.equal(2);
    expect(runs).to.equal(1);
    expect(paying.spent).to.equal(P);
    await client.close();
  });
});
