import { SCHEME, X402_VERSION } from "../../protocol/headers";
import type { ChannelPayments } from "./channelPayments";
import { requestLine } from "./channelScheme";
import type {
  Network,
  PaymentPayload,
  PaymentRequirements,
  SettleResponse,
  SupportedResponse,
  VerifyResponse,
} from "./x402Types";

/**
 * An in-process x402 facilitator for scheme "channel": there is nothing to settle on-chain per
 * request (the paychan settler claims many vouchers per transaction later), so no hosted
 * facilitator is involved. It announces the scheme to x402's resource server, which builds the
 * channel offers only for kinds a facilitator supports. The scheme's hooks answer verify and
 * settle without calling it; should a hook not answer, verify and settle here do the same work.
 */
export class ChannelFacilitatorClient {
  constructor(
    private readonly payments: ChannelPayments,
    private readonly network: Network,
  ) {}

  async getSupported(): Promise<SupportedResponse> {
    return {
      kinds: [{ x402Version: X402_VERSION, scheme: SCHEME, network: this.network }],
      extensions: [],
      signers: {},
    };
  }

  async verify(payload: PaymentPayload, requirements: PaymentRequirements): Promise<VerifyResponse> {
    const verdict = await this.payments.verify(payload, requirements, requestLine(undefined, payload));
    return verdict.ok ? { isValid: true, payer: verdict.payer } : { isValid: false, invalidReason: verdict.reason };
  }

  async settle(payload: PaymentPayload, requirements: PaymentRequirements): Promise<SettleResponse> {
    const settled = await this.payments.settle(payload, requirements);
    if (settled.ok) return settled.response;
    return { success: false, errorReason: settled.reason, transaction: "", network: this.network };
  }
}
