import http from "node:http";
import type { AddressInfo } from "node:net";
import { HTTPFacilitatorClient } from "@x402/core/http";
import {
  isPaymentPayloadV2,
  isPaymentRequiredV2,
  validatePaymentPayload,
  validatePaymentRequired,
  type PaymentPayloadV2,
  type PaymentRequiredV2,
} from "@x402/core/schemas";
import type { SettleResponse } from "@x402/core/types";
import { decodeHeader } from "../../src/protocol/headers";

/**
 * x402's own validators for the three headers. PaymentRequired and PaymentPayload have exported
 * ones; SettleResponse is checked by @x402/core (its zod `settleResponseSchema`) only where its
 * HTTPFacilitatorClient reads a facilitator's /settle answer, so {@link validSettleResponse}
 * serves the value as that answer on 127.0.0.1 and returns what the client accepted.
 */

/** Decodes a PAYMENT-REQUIRED header and validates it with @x402/core; throws when invalid. */
export function validPaymentRequired(header: string): PaymentRequiredV2 {
  const value = validatePaymentRequired(decodeHeader(header));
  if (!isPaymentRequiredV2(value)) throw new Error("PAYMENT-REQUIRED is not x402 version 2");
  return value;
}

/** Decodes a PAYMENT-SIGNATURE header and validates it with @x402/core; throws when invalid. */
export function validPaymentPayload(header: string): PaymentPayloadV2 {
  const value = validatePaymentPayload(decodeHeader(header));
  if (!isPaymentPayloadV2(value)) throw new Error("PAYMENT-SIGNATURE is not x402 version 2");
  return value;
}

/** Decodes a PAYMENT-RESPONSE header and validates it with @x402/core; rejects when invalid. */
export async function validSettleResponse(header: string): Promise<SettleResponse> {
  const body = JSON.stringify(decodeHeader(header));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "application/json" }).end(body));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const facilitator = new HTTPFacilitatorClient({ url: `http://127.0.0.1:${port}` });
    const requirements = {
      scheme: "channel",
      network: "eip155:1",
      asset: "",
      amount: "0",
      payTo: "",
      maxTimeoutSeconds: 1,
      extra: {},
    } as const;
    return await facilitator.settle({ x402Version: 2, accepted: requirements, payload: {} }, requirements);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}
