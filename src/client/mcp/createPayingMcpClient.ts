import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { RequestOptions } from "@modelcontextprotocol/sdk/shared/protocol.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import {
  decodeHeader,
  encodeHeader,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type PaymentRequired,
  type SettleResponse,
} from "../../protocol/headers";
import { MCP_PAYMENT_META, MCP_PAYMENT_RESPONSE_META, MCP_TOOL_METHOD, toolResource } from "../../protocol/mcp";
import { isReasonCode, statusOf } from "../../protocol/reasons";
import { createPayingFetch, type PaymentInfo, type PayingFetchOptions } from "../createPayingFetch";
import type { ChannelState } from "../stateStore";

/** A tool call's answer, with what paid it. */
export interface PaidToolResult {
  readonly result: CallToolResult;
  /** Set when the call was paid (its receipt verified, unless `receiptPolicy: "flag"`). */
  readonly payment?: PaymentInfo;
  /** The x402 PaymentRequired of a call left unpaid (refused, or no channel offer to pay). */
  readonly paymentRequired?: PaymentRequired;
}

/** An MCP client of the official SDK whose priced tool calls are paid through a channel. */
export interface PayingMcpClient {
  /**
   * Calls a tool; when it asks for payment (x402's MCP transport), pays it with the channel and
   * calls it again with the payment in `_meta["x402/payment"]`.
   */
  callTool(
    name: string,
    args?: Record<string, unknown>,
    options?: RequestOptions & { readonly meta?: Record<string, unknown> },
  ): Promise<PaidToolResult>;
  /** Charged so far through this client, atomic units. */
  readonly spent: bigint;
  /** Prices of the calls in flight, atomic units. */
  readonly reserved: bigint;
  /** Added to channels by automatic top-ups so far, atomic units. */
  readonly toppedUp: bigint;
  /** The persisted state of a channel, if known. */
  channelState(channelId: bigint): Readonly<ChannelState> | undefined;
}

/** Header naming the pending call an exchange belongs to (never leaves this module). */
const CALL_HEADER = "x-paychan-mcp-call";

interface PendingCall {
  readonly name: string;
  readonly args: Record<string, unknown> | undefined;
  readonly options: (RequestOptions & { readonly meta?: Record<string, unknown> }) | undefined;
}

/** Whether a tool result is x402's payment-required answer. */
function paymentRequiredOf(result: CallToolResult): PaymentRequired | undefined {
  const body = result.structuredContent as Partial<PaymentRequired> | undefined;
  if (result.isError !== true || !body || body.x402Version !== 2 || !Array.isArray(body.accepts)) return undefined;
  return body as PaymentRequired;
}

/**
 * Wraps an MCP `Client` (connected, any transport) so that priced tools are paid through a
 * payment channel, following x402's MCP transport (docs/mcp.md). It is `createPayingFetch` with
 * tool calls for HTTP exchanges: the same options, spend limits, channel bookkeeping (state
 * store, cumulative vouchers, concurrency rule, resynchronization from a refusal's channel view,
 * deposit probe, automatic top-ups) and offline receipt checks.
 *
 * A call is first made without payment; its answer, when the tool is priced, is a result with
 * `isError: true` and x402's PaymentRequired in `structuredContent`. The channel offer is picked
 * (and remembered per tool, so later calls are paid directly), the voucher is signed and the call
 * is made again with the PaymentPayload in `_meta["x402/payment"]`; the SettleResponse in the
 * result's `_meta["x402/payment-response"]` is checked against the offer's receipt signer.
 *
 * The channel resolver (`options.channel`) gets the offer and the tool's resource URL
 * `mcp://tool/<name>`: an offer's relay path is relative to the seller's HTTP origin, so resolve
 * it against the MCP server's URL (`termsFromOffer(offer, mcpUrl)`).
 */
export function createPayingMcpClient(client: Client, options: PayingFetchOptions): PayingMcpClient {
  const pending = new Map<string, PendingCall>();
  const results = new WeakMap<Response, CallToolResult>();
  let nextCall = 0;

  /** One tool call as an HTTP exchange: the payment as PAYMENT-SIGNATURE, the answer as 402 or 200. */
  const exchange = async (_input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    const call = pending.get(headers.get(CALL_HEADER) ?? "");
    if (!call) throw new Error("createPayingMcpClient: an exchange for no pending call");
    const header = headers.get(PAYMENT_SIGNATURE_HEADER);
    const meta = {
      ...call.options?.meta,
      ...(header ? { [MCP_PAYMENT_META]: decodeHeader<Record<string, unknown>>(header) } : {}),
    };
    const result = (await client.callTool(
      {
        name: call.name,
        ...(call.args ? { arguments: call.args } : {}),
        ...(Object.keys(meta).length > 0 ? { _meta: meta } : {}),
      },
      undefined,
      call.options,
    )) as CallToolResult;
    const settled = result._meta?.[MCP_PAYMENT_RESPONSE_META] as SettleResponse | undefined;
    const required = settled ? undefined : paymentRequiredOf(result);
    let response: Response;
    if (settled && typeof settled === "object") {
      response = new Response(null, { status: 200, headers: { [PAYMENT_RESPONSE_HEADER]: encodeHeader(settled) } });
    } else if (required) {
      const status = required.error && isReasonCode(required.error) ? statusOf(required.error) : 402;
      response = new Response(null, { status, headers: { [PAYMENT_REQUIRED_HEADER]: encodeHeader(required) } });
    } else {
      response = new Response(null, { status: 200 });
    }
    results.set(response, result);
    return response;
  };

  const pay = createPayingFetch(exchange, options);

  async function callTool(
    name: string,
    args?: Record<string, unknown>,
    callOptions?: RequestOptions & { readonly meta?: Record<string, unknown> },
  ): Promise<PaidToolResult> {
    const id = String(nextCall++);
    pending.set(id, { name, args, options: callOptions });
    try {
      const response = await pay(toolResource(name).url, { method: MCP_TOOL_METHOD, headers: { [CALL_HEADER]: id } });
      const result = results.get(response);
      if (!result) throw new Error(`createPayingMcpClient: no result for the call of ${name}`);
      const required = response.payment ? undefined : paymentRequiredOf(result);
      return {
        result,
        ...(response.payment ? { payment: response.payment } : {}),
        ...(required ? { paymentRequired: required } : {}),
      };
    } finally {
      pending.delete(id);
    }
  }

  return Object.defineProperties(
    { callTool, channelState: (channelId: bigint) => pay.channelState(channelId) },
    {
      spent: { get: () => pay.spent, enumerable: true },
      reserved: { get: () => pay.reserved, enumerable: true },
      toppedUp: { get: () => pay.toppedUp, enumerable: true },
    },
  ) as PayingMcpClient;
}
