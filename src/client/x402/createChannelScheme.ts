import type {
  FindDefaultAsset,
  PaymentPayloadContext,
  PaymentPayloadResult,
  PaymentRequirements,
  SchemeClientHooks,
  SchemeNetworkClient,
} from "@x402/core/types";
import {
  channelIdHex,
  SCHEME,
  X402_VERSION,
  type ChannelOffer,
  type PaymentRequired,
  type SettleResponse,
} from "../../protocol/headers";
import { voucherDomain, voucherTypedData } from "../../protocol/voucher";
import { receiptProblem } from "../checkReceipt";
import { InsufficientDepositError, PaymentLimitError } from "../errors";
import { openChannel, type FundingMethod } from "../openChannel";
import { channelKey, memoryStateStore, offerKey, type ChannelState, type ClientStateStore } from "../stateStore";
import { chainIdOf, termsFromOffer, type TypedDataSigner } from "../terms";
import { ChannelBook, type ChannelSlot, viewOf } from "../trackChannel";
import { findDefaultAssetIn, type DefaultAssetEntry } from "./findDefaultAsset";

/**
 * paychan's `channel` scheme as an x402 client plug-in: a `SchemeNetworkClient` that
 * `x402Client.register(network, scheme)` takes like any other, so `@x402/fetch`'s
 * `wrapFetchWithPayment` and `@x402/axios`'s `wrapAxiosWithPayment` pay paychan servers.
 *
 * - On the first offer of a server (network, contract, payee, token) it opens a channel with
 *   `deposit`, funded as `funding` says: gasless through the server's relay (the payer signs one
 *   EIP-3009 authorization), or with an approval or a permit. Concurrent first requests share
 *   the opening; the offer → channel map is kept in the state store, so a restarted client with
 *   the same store reuses the channel.
 * - Each payment is a voucher for the next cumulative amount,
 *   `max(signedMax + 1, chargedKnown + inFlight + price)` (docs/protocol.md, Concurrency),
 *   recorded in the state store before it is signed; any number of concurrent requests on one
 *   channel are each paid once.
 * - x402's spend controls apply: `findDefaultAsset` names USDC (and `defaultAssets`) so that
 *   x402Client's dollar caps work, and a price above the `maxAmountPerPayment` x402Client resolves
 *   is refused before anything is signed. The cap is per payment, that is per request's price; the
 *   deposit is `deposit`, and `maxTotal` bounds what this plug-in pays in all.
 * - `onPaymentResponse` settles the bookkeeping: a paid answer's receipt is verified and its
 *   charged total adopted; a refusal carrying the server's channel view (`extra.channelState`)
 *   resynchronizes the state, and for a refusal the view corrects (state lost or stale, another
 *   process on the channel) it returns `{ recovered: true }`, so the transport pays again at once.
 */

/** Options of {@link createChannelScheme}. */
export interface ChannelSchemeOptions {
  /** Signs vouchers: the channel's signer (normally a generated session key, not the funding wallet). */
  readonly sessionAccount: TypedDataSigner;
  /** How a channel opened on first use is funded: `{ kind: "relay", payer }` is gasless. */
  readonly funding: FundingMethod;
  /** Deposit of a channel opened on first use, atomic units (at least the offer's `extra.minDeposit`). */
  readonly deposit: bigint;
  /** Withdraw delay of a channel opened on first use, seconds. Default: the offer's `extra.minWithdrawDelay`. */
  readonly withdrawDelay?: number;
  /** Where channels, amounts signed and receipts live. Default: in memory; `fileStateStore` survives restarts. */
  readonly store?: ClientStateStore;
  /** Largest total this plug-in pays (charged plus reserved for requests in flight), atomic units. Default: no cap. */
  readonly maxTotal?: bigint;
  /** More USD stablecoins for x402's spend controls, besides Circle's USDC (e.g. a local network's mock USDC). */
  readonly defaultAssets?: readonly DefaultAssetEntry[];
}

/** The plug-in: register it with `x402Client.register(network, scheme)`. */
export interface ChannelScheme extends SchemeNetworkClient {
  readonly scheme: typeof SCHEME;
  readonly schemeHooks: SchemeClientHooks;
  readonly findDefaultAsset: FindDefaultAsset;
  /** Charged so far through this plug-in, atomic units. */
  readonly spent: bigint;
  /** Prices of requests paid and not answered yet, atomic units. */
  readonly reserved: bigint;
  /** The persisted state of a channel, if known. */
  channelState(channelId: bigint): Readonly<ChannelState> | undefined;
}

/** A voucher sent and not answered yet. */
interface Pending {
  readonly slot: ChannelSlot;
  readonly price: bigint;
  readonly timer: NodeJS.Timeout;
}

/** Refusals caused by this client's own amounts, which the server's channel view corrects. */
const CORRECTIVE = new Set(["insufficient_amount", "voucher_reused"]);

/** How long past the offer's `maxTimeoutSeconds` an unanswered voucher is still waited for. */
const ANSWER_GRACE_MS = 5_000;

/** Creates the `channel` scheme plug-in; see the module comment. */
export function createChannelScheme(options: ChannelSchemeOptions): ChannelScheme {
  const book = new ChannelBook(options.store ?? memoryStateStore(), options.sessionAccount.address);
  const opening = new Map<string, Promise<bigint>>();
  /**
   * The resource URL of each 402 being paid (x402Client hands the same requirements object to
   * the hook and to createPaymentPayload): it names the request, and resolves the relay's path.
   */
  const resources = new WeakMap<object, string>();
  const pending = new Map<string, Pending>();
  let spent = 0n;
  let reserved = 0n;

  const pendingKey = (slotKey: string, amount: bigint) => `${slotKey}:${amount.toString(16)}`;
  const saveQuietly = (slot: ChannelSlot): Promise<void> => slot.persist().catch(() => undefined);

  /** The channel paying `offer`: from the store, or opened now (once for concurrent callers). */
  async function channelIdFor(offer: ChannelOffer, resourceUrl: string | undefined): Promise<bigint> {
    const known = book.known(offer);
    if (known !== undefined) return known;
    const key = offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset);
    let open = opening.get(key);
    if (!open) {
      open = (async () => {
        if (resourceUrl === undefined) {
          throw new Error("paychan channel scheme: no 402 seen for this offer; register the scheme with an x402Client");
        }
        if (options.deposit < BigInt(offer.extra.minDeposit)) {
          throw new Error(
            `paychan channel scheme: deposit ${options.deposit} is below the server's minimum ${offer.extra.minDeposit}`,
          );
        }
        const opened = await openChannel({
          terms: termsFromOffer(offer, resourceUrl),
          funding: options.funding,
          signer: options.sessionAccount.address,
          amount: options.deposit,
          ...(options.withdrawDelay !== undefined ? { withdrawDelay: options.withdrawDelay } : {}),
        });
        book.remember(offer, opened.channelId, opened.deposit);
        return opened.channelId;
      })();
      open.catch(() => opening.delete(key));
      opening.set(key, open);
    }
    return open;
  }

  /** Removes and returns the voucher of `amount` on `channelId` still waiting for its answer. */
  function answered(offer: ChannelOffer, channelId: bigint, amount: bigint): Pending | undefined {
    const key = pendingKey(channelKey(offer.network, offer.extra.contract, channelId), amount);
    const entry = pending.get(key);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    pending.delete(key);
    reserved -= entry.price;
    return entry;
  }

  async function createPaymentPayload(
    x402Version: number,
    requirements: PaymentRequirements,
    context?: PaymentPayloadContext,
  ): Promise<PaymentPayloadResult> {
    if (x402Version !== X402_VERSION) {
      throw new Error(`paychan channel scheme speaks x402 version 2, not ${x402Version}`);
    }
    const offer = requirements as unknown as ChannelOffer;
    const extra = offer.extra as Partial<ChannelOffer["extra"]>;
    if (typeof extra.contract !== "string" || typeof extra.receiptSigner !== "string" || !/^\d+$/.test(offer.amount)) {
      throw new Error("paychan channel scheme: the offer is not a paychan channel offer (docs/protocol.md)");
    }
    const resourceUrl = resources.get(requirements);
    const url = resourceUrl ?? `the ${offer.network} offer of ${offer.payTo}`;
    const price = BigInt(offer.amount);
    if (context?.maxAmountPerPayment !== undefined && price > BigInt(context.maxAmountPerPayment)) {
      throw new PaymentLimitError(
        "maxAmountPerPayment",
        price,
        BigInt(context.maxAmountPerPayment),
        spent + reserved,
        url,
      );
    }
    if (options.maxTotal !== undefined && spent + reserved + price > options.maxTotal) {
      throw new PaymentLimitError("maxTotal", price, options.maxTotal, spent + reserved, url);
    }
    reserved += price;
    let slot: ChannelSlot | undefined;
    let amount: bigint | undefined;
    let signature: `0x${string}`;
    try {
      slot = book.slot(offer, await channelIdFor(offer, resourceUrl));
      amount = slot.reserve(price);
      if (amount === undefined) {
        throw new InsufficientDepositError(slot.channelId, offer, price, slot.deposit ?? 0n, slot.available(), url);
      }
      // The amount is durable before it is signed: a restart never signs it again.
      await slot.persist();
      signature = await options.sessionAccount.signTypedData(
        voucherTypedData(voucherDomain(chainIdOf(offer.network), offer.extra.contract), {
          channelId: slot.channelId,
          cumulativeAmount: amount,
        }),
      );
    } catch (error) {
      reserved -= price;
      if (slot && amount !== undefined) slot.release(price, amount);
      throw error;
    }
    const key = pendingKey(channelKey(offer.network, offer.extra.contract, slot.channelId), amount);
    const sent = { slot, amount, price };
    // A request that fails in transit never reaches onPaymentResponse: past the offer's time
    // budget its voucher counts as lost (the server may have accepted it) and its price no longer
    // holds later amounts up.
    const timer = setTimeout(
      () => {
        if (pending.delete(key)) {
          reserved -= sent.price;
          sent.slot.lose(sent.price, sent.amount);
        }
      },
      offer.maxTimeoutSeconds * 1000 + ANSWER_GRACE_MS,
    ).unref();
    pending.set(key, { slot, price, timer });
    return {
      x402Version: X402_VERSION,
      payload: { channelId: channelIdHex(slot.channelId), amount: amount.toString(), signature },
    };
  }

  const schemeHooks: SchemeClientHooks = {
    async onBeforePaymentCreation(ctx) {
      resources.set(ctx.selectedRequirements, ctx.paymentRequired.resource.url);
    },

    async onPaymentResponse(ctx) {
      const offer = ctx.requirements as unknown as ChannelOffer;
      const voucher = ctx.paymentPayload.payload as { channelId?: unknown; amount?: unknown };
      if (typeof voucher.channelId !== "string" || typeof voucher.amount !== "string") return;
      const channelId = BigInt(voucher.channelId);
      const amount = BigInt(voucher.amount);
      const sent = answered(offer, channelId, amount);
      if (!sent) return;
      const { slot, price } = sent;

      const paid = ctx.settleResponse as SettleResponse | undefined;
      if (paid?.success) {
        const problem = await receiptProblem(paid, offer, channelId, amount, price);
        if (problem !== undefined) {
          // Not trusted: its charged total is not adopted, and the full price counts as spent.
          slot.release(price, amount);
          spent += price;
          await saveQuietly(slot);
          throw new Error(`invalid payment receipt for ${ctx.paymentPayload.resource?.url ?? offer.payTo}: ${problem}`);
        }
        const chargedTotal = BigInt(paid.extra.chargedTotal);
        slot.release(price, amount, chargedTotal);
        spent += BigInt(paid.amount);
        slot.learnDeposit(BigInt(paid.extra.remaining) + chargedTotal);
        slot.state.receipts += 1;
        slot.state.lastReceipt = paid.extra.receipt;
        slot.adoptQuote(paid);
        await saveQuietly(slot);
        return;
      }
      const refusal = ctx.paymentRequired;
      if (!refusal) {
        // No verdict readable (a status without x402 headers, or a failed settlement): the server
        // may have accepted the voucher, so its amount is never reused.
        slot.lose(price, amount);
        return;
      }
      // A refused voucher is unused; the view brings signedMax back to what the server holds.
      slot.release(price, amount);
      const view = viewOf(refusal as unknown as PaymentRequired, channelId);
      if (!view) return;
      slot.resync(view);
      await saveQuietly(slot);
      const error = refusal.error ?? "";
      const corrective = CORRECTIVE.has(error) || (error === "amount_exceeds_deposit" && slot.fits(price));
      return corrective ? { recovered: true } : undefined;
    },
  };

  return Object.defineProperties(
    {
      scheme: SCHEME,
      schemeHooks,
      findDefaultAsset: findDefaultAssetIn(options.defaultAssets),
      createPaymentPayload,
      channelState: (channelId: bigint) => book.find(channelId),
    },
    {
      spent: { get: () => spent, enumerable: true },
      reserved: { get: () => reserved, enumerable: true },
    },
  ) as ChannelScheme;
}
