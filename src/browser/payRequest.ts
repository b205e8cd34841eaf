import type { PrivateKeyAccount } from "viem/accounts";
import {
  decodeHeader,
  encodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../protocol/headers";
import { voucherDomain, voucherTypedData } from "../protocol/voucher";
import type { SessionVault, StoredChannel } from "./sessionVault";

/**
 * Pays one request with a voucher signed by the session key, without any wallet prompt.
 *
 * The amount follows the protocol's rule `next = max(signedMax + 1, chargedKnown + price)`; it is
 * never above the deposit (the buyer's spending limit), and it is stored before the voucher is
 * sent, so a reload or a crash never signs an amount twice. Tabs of the same origin take turns
 * through a Web Lock, so they never race for the same amount. A refusal carrying the server's view
 * of the channel (`extra.channelState`) resynchronizes and is retried once; a voucher refused
 * because the server has not seen a top-up yet is resent unchanged for a few seconds.
 */

/** How long a voucher refused for a deposit the server has not seen grow yet is resent, and how often. */
const DEPOSIT_WAIT_MS = 10_000;
const DEPOSIT_POLL_MS = 250;

/** The spending limit would be exceeded: nothing was signed. */
export class SpendingLimitReached extends Error {
  constructor(readonly available: bigint) {
    super("the spending limit of this channel is used up");
    this.name = "SpendingLimitReached";
  }
}

export interface PaidAnswer {
  readonly response: Response;
  /** The PAYMENT-RESPONSE of a paid answer. */
  readonly settled?: SettleResponse;
  readonly channel: StoredChannel;
}

export async function payRequest(
  vault: SessionVault,
  session: PrivateKeyAccount,
  offer: ChannelOffer,
  channelKey: string,
  url: string,
): Promise<PaidAnswer> {
  return navigator.locks.request(`paychan:${channelKey}`, async () => {
    const channel = await vault.channel(channelKey);
    if (!channel) throw new Error("no channel for this offer");
    const chainId = Number(offer.network.split(":")[1]);
    const domain = voucherDomain(chainId, offer.extra.contract);
    const price = BigInt(offer.amount);
    /** Reserves the next amount, durably, before anything is signed. */
    const reserve = async (): Promise<bigint> => {
      const signedMax = BigInt(channel.signedMax);
      const byCharge = BigInt(channel.chargedKnown) + price;
      const next = byCharge > signedMax ? byCharge : signedMax + 1n;
      if (next > BigInt(channel.deposit)) throw new SpendingLimitReached(BigInt(channel.deposit) - signedMax);
      channel.signedMax = next.toString();
      await vault.saveChannel(channel);
      return next;
    };
    let amount = await reserve();
    let resynced = false;
    let waitedMs = 0;
    for (;;) {
      const signature = await session.signTypedData(
        voucherTypedData(domain, { channelId: BigInt(channel.channelId), cumulativeAmount: amount }),
      );
      const response = await fetch(url, {
        headers: {
          [PAYMENT_SIGNATURE_HEADER]: encodePaymentSignature(
            offer,
            { channelId: channel.channelId, amount: amount.toString(), signature },
            { url },
          ),
        },
        credentials: "same-origin",
        cache: "no-store",
      });
      const paid = response.headers.get(PAYMENT_RESPONSE_HEADER);
      if (paid) {
        const settled = decodeHeader<SettleResponse>(paid);
        if (BigInt(settled.extra.chargedTotal) > BigInt(channel.chargedKnown)) {
          channel.chargedKnown = settled.extra.chargedTotal;
        }
        await vault.saveChannel(channel);
        return { response, settled, channel };
      }
      const required = response.headers.get(PAYMENT_REQUIRED_HEADER);
      const refusal = required ? decodeHeader<PaymentRequired>(required) : undefined;
      const view = refusal?.accepts[0]?.extra.channelState;
      if (
        view &&
        refusal?.error === "amount_exceeds_deposit" &&
        BigInt(view.deposit) < BigInt(channel.deposit) &&
        waitedMs < DEPOSIT_WAIT_MS
      ) {
        // A top-up the server has not seen yet: the same voucher again, shortly.
        await response.arrayBuffer().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, DEPOSIT_POLL_MS));
        waitedMs += DEPOSIT_POLL_MS;
        continue;
      }
      if (!view || resynced) return { response, channel };
      // The server holds other amounts than this browser remembers (another device, lost storage):
      // continue from its view. The refused amount was not used, but is never signed again.
      resynced = true;
      channel.chargedKnown = view.chargedTotal;
      if (BigInt(view.highestAmount) > BigInt(channel.signedMax)) channel.signedMax = view.highestAmount;
      await response.arrayBuffer().catch(() => undefined);
      amount = await reserve();
    }
  });
}
