import type { Address } from "viem";
import {
  EXACT_SCHEME,
  verifyExactPayment,
  type DecodedExactPayment,
  type ExactOffer,
  type ExactSettleResponse,
} from "../protocol/exact";
import type { ReasonCode } from "../protocol/reasons";
import type { AuthorizationStore } from "../store/types";
import { silentLogger, type Logger } from "../shared/log";
import type { ExactSettler } from "./exactSettler";

/**
 * The `exact` fallback: a buyer whose x402 client only knows `exact` pays each request with one
 * EIP-3009 transfer. Verify before serve holds in its strongest form here: the payment is checked
 * offline, its authorization recorded durably (a replay is refused from the store, across
 * restarts, before any RPC), then settled, and the request is served only once the transfer is
 * mined. The mined transfer is the payment's durability and its receipt; there is no voucher to
 * store or claim.
 */

export interface ExactPaymentsOptions {
  /** CAIP-2 network id. */
  readonly network: string;
  readonly chainId: number;
  /** The token (EIP-3009) and its EIP-712 domain. */
  readonly token: { readonly address: Address; readonly name: string; readonly version: string };
  readonly payee: Address;
  readonly maxTimeoutSeconds: number;
  readonly store: AuthorizationStore;
  readonly settler: ExactSettler;
  /** Unix seconds; injectable for tests. */
  readonly nowSec?: () => number;
  readonly logger?: Logger;
}

export type ExactOutcome =
  { readonly ok: true; readonly response: ExactSettleResponse } | { readonly ok: false; readonly reason: ReasonCode };

export class ExactPayments {
  private readonly log: Logger;

  constructor(private readonly options: ExactPaymentsOptions) {
    this.log = options.logger ?? silentLogger;
  }

  /** The `exact` entry of `accepts` for a route priced `price` (an "upto" route's maximum: exact charges it all). */
  offer(price: bigint): ExactOffer {
    const o = this.options;
    return {
      scheme: EXACT_SCHEME,
      network: o.network,
      amount: price.toString(),
      asset: o.token.address,
      payTo: o.payee,
      maxTimeoutSeconds: o.maxTimeoutSeconds,
      extra: { name: o.token.name, version: o.token.version },
    };
  }

  /** Verifies, records and settles `payment` for a request priced `price`; resolves once the transfer is mined. */
  async pay(payment: DecodedExactPayment, price: bigint): Promise<ExactOutcome> {
    const o = this.options;
    const verdict = await verifyExactPayment(payment, {
      network: o.network,
      domain: { name: o.token.name, version: o.token.version, chainId: o.chainId, verifyingContract: o.token.address },
      payTo: o.payee,
      price,
      nowSec: o.nowSec ? o.nowSec() : Math.floor(Date.now() / 1000),
    });
    if (!verdict.ok) return verdict;
    const a = payment.authorization;
    const token = o.token.address;
    try {
      // Synchronous and durable: a concurrent or later replay finds the row.
      if (
        !o.store.reserveAuthorization({ token, payer: a.from, nonce: a.nonce, value: a.value, createdAt: Date.now() })
      ) {
        return { ok: false, reason: "authorization_reused" };
      }
    } catch (error) {
      this.log.warn("could not record an exact authorization", { err: error });
      return { ok: false, reason: "store_unavailable" };
    }
    const settled = await o.settler.settle(payment, this.offer(price));
    if (!settled.ok) {
      this.log.info("exact payment not settled", { payer: a.from, reason: settled.reason, message: settled.message });
      // Nothing reached the chain: the payer may send the same authorization again (after a
      // top-up, say). Once broadcast, the row stays and a replay is refused.
      if (!settled.broadcast) this.forget(a.from, a.nonce);
      return { ok: false, reason: settled.reason };
    }
    try {
      o.store.completeAuthorization(token, a.from, a.nonce, settled.txHash);
    } catch (error) {
      // The transfer is mined and the reservation stands (replays stay refused): serve.
      this.log.warn("could not record an exact transfer", { txHash: settled.txHash, err: error });
    }
    return {
      ok: true,
      response: {
        success: true,
        transaction: settled.txHash,
        network: o.network,
        payer: settled.payer,
        amount: a.value.toString(),
      },
    };
  }

  private forget(payer: Address, nonce: `0x${string}`): void {
    try {
      this.options.store.releaseAuthorization(this.options.token.address, payer, nonce);
    } catch (error) {
      this.log.warn("could not release an exact authorization", { err: error });
    }
  }
}
