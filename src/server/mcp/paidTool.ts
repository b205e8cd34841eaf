import type { McpServer, RegisteredTool, ToolCallback } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { AnySchema, ZodRawShapeCompat } from "@modelcontextprotocol/sdk/server/zod-compat.js";
import type { CallToolResult, ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { encodeHeader, type Pricing } from "../../protocol/headers";
import { MCP_PAYMENT_META, MCP_PAYMENT_RESPONSE_META, MCP_TOOL_METHOD, toolResource } from "../../protocol/mcp";
import { toAtomic, type Price } from "../../protocol/price";
import { createHash } from "node:crypto";
import { CONFIG_DEFAULTS } from "../../shared/config";
import type { OfferedPaymentRequired, PaymentGate } from "../gate";

/** The schemas a tool's arguments may be given as (those of the SDK's `registerTool`). */
export type ToolInput = undefined | ZodRawShapeCompat | AnySchema;

/** How a priced tool is described and priced; the rest of `registerTool`'s config, less `outputSchema`. */
export interface PaidToolConfig<InputArgs extends ToolInput> {
  /**
   * What one call costs: atomic units (a bigint or a string of digits), or `"$0.001"` / `"0.001"`
   * with {@link decimals} (those of the server's token; of its first token when pricing in dollars).
   */
  readonly price: Price;
  /** Decimals of the price's unit, for a decimal price. */
  readonly decimals?: number;
  readonly title?: string;
  readonly description?: string;
  readonly inputSchema?: InputArgs;
  readonly annotations?: ToolAnnotations;
  readonly _meta?: Record<string, unknown>;
  /** The server's `retryWindowMs`, when its configuration changes it: how long a retry's arguments are checked. */
  readonly retryWindowMs?: number;
}

/** Most paid calls whose arguments are remembered per gate (the oldest are forgotten first). */
const MAX_REMEMBERED = 100_000;

/**
 * The arguments of the calls each voucher paid in the last retry window. A voucher's receipt is
 * bound to the tool, not to its arguments: a retry must repeat them, or it would be another call
 * served for nothing.
 */
class PaidArguments {
  private readonly calls = new Map<string, { readonly digest: string; readonly at: number }>();

  constructor(private readonly windowMs: number) {}

  /** Whether a retry of `key` repeats its arguments; undefined when they are not remembered. */
  matches(key: string, digest: string, now: number): boolean | undefined {
    const call = this.calls.get(key);
    return call && now - call.at <= this.windowMs ? call.digest === digest : undefined;
  }

  remember(key: string, digest: string, now: number): void {
    for (const [oldest, call] of this.calls) {
      if (now - call.at <= this.windowMs && this.calls.size < MAX_REMEMBERED) break;
      this.calls.delete(oldest);
    }
    this.calls.set(key, { digest, at: now });
  }
}

const remembered = new WeakMap<PaymentGate, PaidArguments>();

/** A digest of a call's arguments (as parsed by the tool's input schema), keys in a fixed order. */
function argumentsDigest(args: unknown): string {
  const canonical = JSON.stringify(args ?? null, (_key, value: unknown) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : typeof value === "bigint"
        ? value.toString()
        : value,
  );
  return createHash("sha256").update(canonical).digest("base64");
}

/** The text of a retry of a failed call. */
const FAILED_RETRY = "this payment's call failed and was not charged; pay the call again with a new voucher";

/** A tool result refusing the call: x402's PaymentRequired as structured content and as text. */
export function paymentRequiredResult(body: OfferedPaymentRequired): CallToolResult {
  return {
    isError: true,
    structuredContent: body as unknown as Record<string, unknown>,
    content: [{ type: "text", text: JSON.stringify(body) }],
  };
}

/**
 * The payment header the gate reads, from the call's `_meta["x402/payment"]`: the PaymentPayload
 * object (x402's MCP transport), or the same base64 text as a PAYMENT-SIGNATURE header.
 */
function paymentHeaderOf(meta: Record<string, unknown> | undefined): string | undefined {
  const payment = meta?.[MCP_PAYMENT_META];
  if (payment === undefined || payment === null) return undefined;
  if (typeof payment === "string") return payment;
  // Anything else that is not a payload object decodes to `malformed_header` at the gate.
  return typeof payment === "object" ? encodeHeader(payment) : String(payment);
}

/**
 * Registers a priced tool on an MCP server of the official SDK (`McpServer.registerTool`), paid
 * through the payment gate of a paychan server (`createPaymentServer(...).gate`), following
 * x402's MCP transport (docs/mcp.md):
 *
 * - a call without `_meta["x402/payment"]`, or whose payment the gate refuses, gets a tool result
 *   with `isError: true` whose `structuredContent` is x402's PaymentRequired (the channel offers,
 *   and `exact` when enabled; a refusal's reason code in `error`), also as JSON text in
 *   `content[0].text`. The handler does not run.
 * - a paid call runs the handler only once its voucher is verified **and durable**; its result
 *   carries x402's SettleResponse (paychan's figures and signed receipt in `extra`) in
 *   `_meta["x402/payment-response"]`.
 * - a handler that throws or returns `isError: true` is not charged: the call's charge is set
 *   to 0 (its receipt says so), and the voucher's headroom goes to the payer's next call. An
 *   `exact` payment has already moved its money and stays charged.
 * - the same voucher sent again for the same tool with the same arguments within the retry
 *   window gets the same receipt and is not charged again; the handler runs again, unless the
 *   first call failed (then the retry gets the same uncharged failure). With other arguments it
 *   is `voucher_reused` (the arguments are remembered in this process, per gate).
 *
 * The tool declares no output schema: an SDK client validates a declared one against every
 * result with structured content, including the PaymentRequired of an unpaid call.
 */
export function paidTool<InputArgs extends ToolInput = undefined>(
  server: McpServer,
  gate: PaymentGate,
  name: string,
  config: PaidToolConfig<InputArgs>,
  handler: ToolCallback<InputArgs>,
): RegisteredTool {
  const { price: rawPrice, decimals, retryWindowMs, ...toolConfig } = config;
  if (typeof rawPrice === "string" && !/^\s*\d+\s*$/.test(rawPrice) && decimals === undefined) {
    throw new TypeError(`paidTool "${name}": a decimal price (${rawPrice}) needs \`decimals\``);
  }
  const price = toAtomic(rawPrice, decimals ?? 0);
  const pricing: Pricing = "fixed";
  const resource = toolResource(name);
  const run = handler as (...args: unknown[]) => CallToolResult | Promise<CallToolResult>;
  let paidArguments = remembered.get(gate);
  if (!paidArguments) {
    paidArguments = new PaidArguments(retryWindowMs ?? CONFIG_DEFAULTS.retryWindowMs);
    remembered.set(gate, paidArguments);
  }
  const calls = paidArguments;

  const paid = async (...args: unknown[]): Promise<CallToolResult> => {
    // The SDK passes (extra) to a tool without input schema, (args, extra) otherwise.
    const extra = args[args.length - 1] as { readonly _meta?: Record<string, unknown> } | undefined;
    const request = {
      method: MCP_TOOL_METHOD,
      pathAndQuery: resource.pathAndQuery,
      url: resource.url,
      paymentHeader: paymentHeaderOf(extra?._meta),
      price,
      pricing,
      ...(config.description ? { description: config.description } : {}),
    };
    const payment = await gate.authorize(request);
    if (!payment.ok) return paymentRequiredResult(payment.body);
    if (payment.scheme === "channel") {
      const key = `${name}:${payment.channelId.toString(16)}:${payment.amount.toString(16)}`;
      const digest = argumentsDigest(args.length > 1 ? args[0] : undefined);
      const now = Date.now();
      if (!payment.retry) calls.remember(key, digest, now);
      else if (calls.matches(key, digest, now) === false) {
        return paymentRequiredResult(gate.refuse(request, "voucher_reused").body);
      }
    }
    const answer = (result: CallToolResult): CallToolResult => ({
      ...result,
      _meta: { ...result._meta, [MCP_PAYMENT_RESPONSE_META]: payment.response() },
    });
    // The same voucher gets the same answer: a retry of a call that failed (and was not charged)
    // fails again, rather than running the tool for nothing.
    if (payment.retry && price > 0n && payment.response().amount === "0") {
      return answer({ isError: true, content: [{ type: "text", text: FAILED_RETRY }] });
    }

    let result: CallToolResult;
    try {
      result = await run(...args);
    } catch (error) {
      // As the SDK answers a throwing handler, with the payment's answer attached.
      result = {
        isError: true,
        content: [{ type: "text", text: error instanceof Error ? error.message : String(error) }],
      };
    }
    // A failed call costs nothing (a retry was charged by its first answer only, if at all).
    if (result.isError === true && !payment.retry) payment.charge(0n);
    return answer(result);
  };
  return server.registerTool(name, toolConfig, paid as ToolCallback<InputArgs>);
}
