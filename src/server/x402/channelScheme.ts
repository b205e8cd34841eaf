import { isAddressEqual, type Address } from "viem";
import { SCHEME, type ChannelOffer, type Pricing } from "../../protocol/headers";
import { toAtomic } from "../../protocol/price";
import type { ChannelPayments, RequestLine } from "./channelPayments";
import type {
  AssetAmount,
  ChannelSchemeHooks,
  Network,
  PaymentPayload,
  PaymentRequiredContext,
  PaymentRequirements,
  Price,
  SupportedKind,
} from "./x402Types";

/**
 * x402's server side of scheme "channel" (a `SchemeNetworkServer`): prices routes in the channel
 * token, describes the offer in `extra` exactly as paychan's own 402 does, and handles every
 * voucher locally through scheme hooks that skip the facilitator (the pattern of x402's
 * batch-settlement scheme): `onBeforeVerify` verifies and reserves, `onBeforeSettle` makes the
 * voucher durable, `onVerifiedPaymentCanceled` drops it when the handler failed.
 */

export interface ChannelSchemeOptions {
  readonly payments: ChannelPayments;
  /** CAIP-2 network of the channels. */
  readonly network: Network;
  /** The channel token (the offer's `asset`). */
  readonly asset: Address;
  /** This server's payee: routes must name it as `payTo`. */
  readonly payee: Address;
  readonly decimals: number;
  /** The offer paychan's gate makes for a price (its `extra` is reused as is). */
  readonly offer: (price: bigint, pricing: Pricing) => ChannelOffer;
}

export class ChannelSchemeServer {
  readonly scheme = SCHEME;
  /** No asset transfer method on the wire: a voucher moves nothing until the batch claim. */
  readonly defaultAssetTransferMethod = "default";
  readonly paymentFlows = { default: { supported: ["authorization" as const], default: "authorization" as const } };
  readonly schemeHooks: ChannelSchemeHooks;

  constructor(private readonly options: ChannelSchemeOptions) {
    const { payments } = options;
    this.schemeHooks = {
      onBeforeVerify: async (ctx) => {
        const verdict = await payments.verify(
          ctx.paymentPayload,
          ctx.requirements,
          requestLine(ctx.transportContext, ctx.paymentPayload),
        );
        if (!verdict.ok) return { abort: true, reason: verdict.reason };
        return { skip: true, result: { isValid: true, payer: verdict.payer } };
      },
      onBeforeSettle: async (ctx) => {
        const settled = await payments.settle(
          ctx.paymentPayload as PaymentPayload,
          ctx.requirements as PaymentRequirements,
        );
        if (!settled.ok) return { abort: true, reason: settled.reason };
        return { skip: true, result: settled.response };
      },
      onVerifiedPaymentCanceled: (ctx) => payments.cancel(ctx.paymentPayload),
    };
  }

  /** "$0.001" (USD stablecoin), atomic units as digits, or `{ amount, asset }` in the channel token. */
  async parsePrice(price: Price, network: Network): Promise<AssetAmount> {
    this.checkNetwork(network);
    const { asset, decimals } = this.options;
    if (typeof price === "object") {
      if (!isAddressEqual(price.asset as Address, asset)) {
        throw new Error(`channel payments are in ${asset}, not ${price.asset}`);
      }
      return {
        asset,
        amount: toAtomic(price.amount, decimals).toString(),
        ...(price.extra ? { extra: price.extra } : {}),
      };
    }
    const text = typeof price === "number" ? `$${price}` : price.trim();
    // x402's money strings may omit the "$": "0.001" means $0.001, as in every x402 EVM scheme.
    const money = /^\d+\.\d+$/.test(text) ? `$${text}` : text;
    return { asset, amount: toAtomic(money, decimals).toString() };
  }

  getAssetDecimals(asset: string, network: Network): number | undefined {
    return network === this.options.network && isAddressEqual(asset as Address, this.options.asset)
      ? this.options.decimals
      : undefined;
  }

  /** Adds paychan's offer terms to `extra`; a route's own `extra.pricing` ("upto") is kept. */
  async enhancePaymentRequirements(
    requirements: PaymentRequirements,
    _supportedKind: SupportedKind,
    _facilitatorExtensions: string[],
  ): Promise<PaymentRequirements> {
    this.checkNetwork(requirements.network);
    if (!isAddressEqual(requirements.payTo as Address, this.options.payee)) {
      throw new Error(`channel routes must pay this server's payee ${this.options.payee}, not ${requirements.payTo}`);
    }
    const pricing: Pricing = requirements.extra?.pricing === "upto" ? "upto" : "fixed";
    const { extra } = this.options.offer(BigInt(requirements.amount), pricing);
    return { ...requirements, extra: { ...requirements.extra, ...extra } };
  }

  /** A refusal that names a known channel carries the server's view of it, for the client to resynchronize. */
  enrichPaymentRequiredResponse = async (ctx: PaymentRequiredContext): Promise<PaymentRequirements[] | void> => {
    const channelState = ctx.paymentPayload && this.options.payments.refusedChannel(ctx.paymentPayload);
    if (!channelState) return;
    return ctx.requirements.map((r) =>
      r.scheme === SCHEME && r.network === this.options.network ? { ...r, extra: { ...r.extra, channelState } } : r,
    );
  };

  private checkNetwork(network: string): void {
    if (network !== this.options.network) {
      throw new Error(`this channel scheme serves ${this.options.network}, not ${network}`);
    }
  }
}

/** The request line a receipt names: from the HTTP transport, else from the payload's `resource`. */
export function requestLine(transportContext: unknown, payload: PaymentPayload): RequestLine {
  const request = (
    transportContext as { request?: { method?: string; adapter?: { getUrl(): string; getMethod(): string } } }
  )?.request;
  if (request?.adapter) {
    const url = new URL(request.adapter.getUrl(), "http://localhost");
    return { method: request.method ?? request.adapter.getMethod(), pathAndQuery: url.pathname + url.search };
  }
  const url = new URL(payload.resource?.url ?? "/", "http://localhost");
  return { method: "GET", pathAndQuery: url.pathname + url.search };
}
