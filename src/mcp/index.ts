/**
 * `paychan/mcp`: paid tool calls of the Model Context Protocol (official `@modelcontextprotocol/sdk`,
 * an optional peer dependency used for its types only), over x402's MCP transport (docs/mcp.md).
 *
 * - Sellers: {@link paidTool} registers a priced tool on an `McpServer`, paid through the gate of
 *   a paychan server (`createPaymentServer(...).gate`).
 * - Buyers: {@link createPayingMcpClient} wraps an MCP `Client` so that priced tool calls are paid
 *   through a payment channel, with `createPayingFetch`'s options and bookkeeping.
 *
 * The two roles share this entry only: neither imports the other.
 */
export { paidTool, paymentRequiredResult } from "../server/mcp/paidTool";
export type { PaidToolConfig, ToolInput } from "../server/mcp/paidTool";
export { createPayingMcpClient } from "../client/mcp/createPayingMcpClient";
export type { PaidToolResult, PayingMcpClient } from "../client/mcp/createPayingMcpClient";
export { MCP_PAYMENT_META, MCP_PAYMENT_RESPONSE_META, MCP_TOOL_METHOD, toolResource } from "../protocol/mcp";
export type { ToolResource } from "../protocol/mcp";
