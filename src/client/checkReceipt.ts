import type { ChannelOffer, SettleResponse } from "../protocol/headers";
import { requestHash, verifyReceipt } from "../protocol/receipt";
import { chainIdOf } from "./terms";

/**
 * Checks the receipt of a paid answer against the offer it paid: signed by the offered
 * `extra.receiptSigner`, for this channel and voucher, charging at most the price, and agreeing
 * with the PAYMENT-RESPONSE around it; with `request`, also bound to that method and URL. Returns
 * undefined when it is valid, else what is wrong.
 */
export async function receiptProblem(
  paid: SettleResponse,
  offer: ChannelOffer,
  channelId: bigint,
  amount: bigint,
  price: bigint,
  request?: { readonly method: string; readonly url: string },
): Promise<string | undefined> {
  const r = paid.extra?.receipt;
  if (!r || typeof r !== "object") return "PAYMENT-RESPONSE carries no receipt";
  const ok = await verifyReceipt(r, offer.extra.receiptSigner, chainIdOf(offer.network), offer.extra.contract);
  if (!ok) return `receipt not signed by the offered receiptSigner ${offer.extra.receiptSigner}`;
  if (BigInt(r.channelId) !== channelId) return "receipt names another channel";
  if (BigInt(r.voucherAmount) !== amount) return `receipt is for voucher ${r.voucherAmount}, not ${amount}`;
  if (request) {
    const url = new URL(request.url);
    if (r.request !== requestHash(request.method, url.pathname + url.search)) return "receipt is for another request";
  }
  if (BigInt(r.charge) > price) return `receipt charges ${r.charge}, above the price ${price}`;
  if (r.charge !== paid.amount || r.chargedTotal !== paid.extra.chargedTotal) {
    return "PAYMENT-RESPONSE disagrees with its receipt";
  }
  return undefined;
}
