/**
 * x402 over MCP tool calls (docs/mcp.md): where the payment travels in a `tools/call` and which
 * request a tool call's receipt is bound to.
 */

/** `params._meta` key of a paid tool call: the x402 PaymentPayload (the decoded PAYMENT-SIGNATURE). */
export const MCP_PAYMENT_META = "x402/payment";
/** `result._meta` key of a paid tool result: the x402 SettleResponse (the decoded PAYMENT-RESPONSE). */
export const MCP_PAYMENT_RESPONSE_META = "x402/payment-response";
/** The method a tool call's receipt is bound to: its `request` is keccak256("TOOLS/CALL /<name>"). */
export const MCP_TOOL_METHOD = "TOOLS/CALL";

/** A tool's x402 resource: its URL `mcp://tool/<name>`, and the path its receipts are bound to. */
export interface ToolResource {
  readonly url: string;
  readonly pathAndQuery: string;
}

/** The resource of the tool `name`. */
export function toolResource(name: string): ToolResource {
  const url = `mcp://tool/${name}`;
  const parsed = new URL(url);
  return { url, pathAndQuery: parsed.pathname + parsed.search };
}
