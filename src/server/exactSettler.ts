import { encodeFunctionData, parseSignature, type Address, type Hex, type PublicClient } from "viem";
import { usdcAbi } from "../chain/abi";
import { decodeRevert } from "../chain/decodeRevert";
import { transportFailure } from "../chain/rpcFailure";
import { EXACT_SCHEME, type DecodedExactPayment, type ExactOffer } from "../protocol/exact";
import { X402_VERSION } from "../protocol/headers";

/**
 * Settles a verified `exact` payment: submits its EIP-3009 authorization and resolves once the
 * transfer is mined. Two ways: {@link LocalExactSettler} sends `transferWithAuthorization` from
 * the server's relayer key (no third party), {@link FacilitatorExactSettler} asks a hosted x402
 * facilitator to (`POST <url>/settle`).
 */

/** Why a settlement failed; `broadcast` says whether a transaction may have reached the chain. */
export type ExactSettlementFailure = {
  readonly ok: false;
  readonly reason: "transfer_failed" | "authorization_reused" | "settlement_unavailable";
  readonly broadcast: boolean;
  readonly message: string;
};

export type ExactSettlement =
  | { readonly ok: true; readonly txHash: Hex; readonly payer: Address; readonly gasUsed?: bigint }
  | ExactSettlementFailure;

export interface ExactSettler {
  settle(payment: DecodedExactPayment, offer: ExactOffer): Promise<ExactSettlement>;
}

/** Sends one call and resolves with its final receipt (src/chain/sender.ts's TransactionSender). */
export interface ExactSender {
  readonly address: Address;
  send(
    to: Address,
    data: Hex,
    onBroadcast?: (hash: Hex, nonce: number) => void,
  ): Promise<{ status: "success" | "reverted"; transactionHash: Hex; gasUsed: bigint }>;
}

/** Token reverts that mean the authorization was already used (or cancelled) on-chain. */
const USED = /AuthorizationUsed|authorization is used or canceled/i;

/**
 * Submits `transferWithAuthorization` from the relayer key through the serializing sender (the
 * relay's own, so the two never race for a nonce). The call is simulated first: an authorization
 * the token would refuse (balance, used nonce) costs no gas and frees nothing on-chain.
 */
export class LocalExactSettler implements ExactSettler {
  constructor(private readonly options: { readonly publicClient: PublicClient; readonly sender: ExactSender }) {}

  async settle(payment: DecodedExactPayment, offer: ExactOffer): Promise<ExactSettlement> {
    const { publicClient, sender } = this.options;
    const a = payment.authorization;
    const { r, s, v, yParity } = parseSignature(payment.signature);
    const data = encodeFunctionData({
      abi: usdcAbi,
      functionName: "transferWithAuthorization",
      args: [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce, Number(v ?? 27n + BigInt(yParity)), r, s],
    });
    try {
      await publicClient.call({ account: sender.address, to: offer.asset, data });
    } catch (error) {
      return refused(error, false);
    }
    let broadcast = false;
    try {
      const receipt = await sender.send(offer.asset, data, () => {
        broadcast = true;
      });
      if (receipt.status !== "success") {
        return { ok: false, reason: "transfer_failed", broadcast, message: `${receipt.transactionHash} reverted` };
      }
      return { ok: true, txHash: receipt.transactionHash, payer: a.from, gasUsed: receipt.gasUsed };
    } catch (error) {
      return refused(error, broadcast);
    }
  }
}

/** A failed simulation or send: the token's refusal when it says one, else the chain is unavailable. */
function refused(error: unknown, broadcast: boolean): ExactSettlementFailure {
  const revert = decodeRevert(error);
  const text = error instanceof Error ? error.message : String(error);
  if (revert === undefined && (transportFailure(error) !== undefined || !/revert/i.test(text))) {
    return { ok: false, reason: "settlement_unavailable", broadcast, message: transportFailure(error) ?? text };
  }
  const said =
    revert === undefined
      ? text
      : revert.kind === "reason"
        ? revert.reason
        : revert.kind === "error"
          ? `${revert.name}(${revert.args.map(String).join(", ")})`
          : revert.data.slice(0, 10);
  return { ok: false, reason: USED.test(said) ? "authorization_reused" : "transfer_failed", broadcast, message: said };
}

export interface FacilitatorExactSettlerOptions {
  /** The facilitator's base URL; `<url>/settle` is called. */
  readonly url: string;
  /** Extra request headers, e.g. an API key. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Gives up after this long, ms. Default 120,000 (the facilitator waits for the transfer to be mined). */
  readonly timeoutMs?: number;
}

/**
 * Asks a hosted x402 facilitator to settle: `POST <url>/settle` with x402's
 * `{ x402Version, paymentPayload, paymentRequirements }`, which answers a `SettleResponse` once
 * the transfer is mined. The facilitator pays the gas; paychan has verified the payment locally
 * first and records the authorization all the same.
 */
export class FacilitatorExactSettler implements ExactSettler {
  constructor(private readonly options: FacilitatorExactSettlerOptions) {}

  async settle(payment: DecodedExactPayment, offer: ExactOffer): Promise<ExactSettlement> {
    const a = payment.authorization;
    const paymentPayload = {
      x402Version: X402_VERSION,
      accepted: offer,
      payload: {
        signature: payment.signature,
        authorization: {
          from: a.from,
          to: a.to,
          value: a.value.toString(),
          validAfter: a.validAfter.toString(),
          validBefore: a.validBefore.toString(),
          nonce: a.nonce,
        },
      },
    };
    let response: Response;
    try {
      response = await fetch(`${this.options.url.replace(/\/+$/, "")}/settle`, {
        method: "POST",
        headers: { "content-type": "application/json", ...this.options.headers },
        body: JSON.stringify({ x402Version: X402_VERSION, paymentPayload, paymentRequirements: offer }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 120_000),
      });
    } catch (error) {
      // The request may have reached the facilitator, which may have sent the transfer.
      return { ok: false, reason: "settlement_unavailable", broadcast: true, message: String(error) };
    }
    let body: { success?: unknown; transaction?: unknown; payer?: unknown; errorReason?: unknown };
    try {
      body = (await response.json()) as typeof body;
    } catch {
      body = {};
    }
    if (body.success === true && typeof body.transaction === "string" && /^0x[0-9a-fA-F]{64}$/.test(body.transaction)) {
      return { ok: true, txHash: body.transaction as Hex, payer: a.from };
    }
    const reason = typeof body.errorReason === "string" ? body.errorReason : `HTTP ${response.status}`;
    if (response.status >= 500 || body.success === undefined) {
      return {
        ok: false,
        reason: "settlement_unavailable",
        broadcast: true,
        message: `${EXACT_SCHEME} settle: ${reason}`,
      };
    }
    // x402's facilitators name a used nonce "invalid_exact_evm_nonce_already_used".
    return {
      ok: false,
      reason: /nonce_already_used/.test(reason) ? "authorization_reused" : "transfer_failed",
      broadcast: false,
      message: reason,
    };
  }
}
