import { getAddress, type Address } from "viem";
import { decodeHeader, SCHEME, type ChannelOffer, type PaymentRequired } from "../protocol/headers";
import { formatDollars, toAtomic } from "../protocol/price";
import { discoverWallets, type Wallet } from "./discoverWallets";
import { openChannelGasless, RelayRefusal, topUpChannelGasless } from "./fundChannelGasless";
import { payRequest, SpendingLimitReached, type PaidAnswer } from "./payRequest";
import { offerKey, SessionVault, type StoredChannel } from "./sessionVault";

/**
 * The paywall page's script (bundled into dist/browser/paywall.js; the page is rendered by
 * src/server/paywallPage.ts). First visit: the buyer picks a wallet (click 1: connect), sets a
 * spending limit and approves it (click 2: one EIP-3009 signature in the wallet); the server's
 * relay opens a channel with that deposit, gaslessly, naming a session key kept in IndexedDB; the
 * request is paid with a voucher and its answer shown. Later visits to any page with the same
 * offer pay with the stored channel at once, with no click and no prompt, until the limit is used;
 * a page another site sent the buyer to (the server renders `data-autopay="false"`) asks for one
 * click first.
 *
 * `document.body.dataset.paychan` tells where the page is: confirm, connect, approve, paying, paid,
 * error.
 */

/** The page's terms: the PAYMENT-REQUIRED body the server put in a meta tag (no inline script). */
function readTerms(): PaymentRequired {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="x402-payment-required"]');
  if (!meta) throw new Error("the page carries no payment terms");
  return decodeHeader<PaymentRequired>(meta.content);
}

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const status = (text: string) => (element("status").textContent = text);
const stage = (name: string) => (document.body.dataset.paychan = name);

function fail(error: unknown): void {
  stage("error");
  element("pay").hidden = false;
  if (error instanceof RelayRefusal)
    status(`The server could not fund the channel: ${error.message}. ${error.fix ?? ""}`);
  else status(error instanceof Error ? error.message : String(error));
}

async function main(): Promise<void> {
  const required = readTerms();
  const offer = required.accepts.find((o) => o.scheme === SCHEME);
  if (!offer) {
    status("This server offers no payment this page can make.");
    return;
  }
  const key = offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset);
  const vault = await SessionVault.open();
  const channel = await vault.channel(key);
  if (channel) {
    if (document.body.dataset.autopay !== "true") await confirm(offer, channel);
    try {
      await pay(vault, offer, key);
      return;
    } catch (error) {
      if (!(error instanceof SpendingLimitReached)) throw error;
    }
  }
  await connect(vault, offer, key, channel);
  if (channel) status("What is left of your spending limit does not cover this page: add to it to go on.");
}

/** Waits for a click on "Pay" (for a page another site navigated to). */
function confirm(offer: ChannelOffer, channel: StoredChannel): Promise<void> {
  stage("confirm");
  const { decimals } = offer.extra;
  const left = BigInt(channel.deposit) - BigInt(channel.chargedKnown);
  const button = element<HTMLButtonElement>("approve");
  button.textContent = `Pay ${formatDollars(BigInt(offer.amount), decimals)} from your limit`;
  button.hidden = false;
  status(`Another site sent you here. ${formatDollars(left, decimals)} is left of your spending limit.`);
  return new Promise((resolve) =>
    button.addEventListener(
      "click",
      () => {
        button.hidden = true;
        resolve();
      },
      { once: true },
    ),
  );
}

/**
 * Shows the wallets; a click on one connects it (click 1). `used` is this offer's channel when
 * its limit is used up: approving then tops it up instead of opening another.
 */
async function connect(vault: SessionVault, offer: ChannelOffer, key: string, used?: StoredChannel): Promise<void> {
  stage("connect");
  if (!offer.extra.relay) {
    status("This server does not open channels for browsers (it offers no gasless relay).");
    return;
  }
  const list = element("wallets");
  const add = (wallet: Wallet) => {
    const button = document.createElement("button");
    button.type = "button";
    if (wallet.info.icon.startsWith("data:image/")) {
      const icon = document.createElement("img");
      icon.src = wallet.info.icon;
      icon.alt = "";
      button.append(icon);
    }
    button.append(`Connect ${wallet.info.name}`);
    button.addEventListener("click", () => {
      wallet.provider
        .request({ method: "eth_requestAccounts" })
        .then((accounts) => {
          const payer = (accounts as string[])[0];
          if (!payer) throw new Error("The wallet shared no account.");
          list.hidden = true;
          approve(vault, offer, key, wallet, getAddress(payer), used);
        })
        .catch(fail);
    });
    list.append(button);
  };
  const wallets = await discoverWallets(150, add);
  wallets.forEach(add);
  status(wallets.length ? "" : "No wallet found: install a browser wallet, then reload this page.");
}

/**
 * Asks for the spending limit; the approve button (click 2) opens the channel (or tops up `used`,
 * when the connected wallet funded it) and pays.
 */
function approve(
  vault: SessionVault,
  offer: ChannelOffer,
  key: string,
  wallet: Wallet,
  payer: Address,
  used: StoredChannel | undefined,
): void {
  const topUp = used && used.payer === payer ? used : undefined;
  stage("approve");
  const { decimals } = offer.extra;
  const minimum =
    BigInt(offer.extra.minDeposit) > BigInt(offer.amount) ? BigInt(offer.extra.minDeposit) : BigInt(offer.amount);
  const input = element<HTMLInputElement>("limit");
  const button = element<HTMLButtonElement>("approve");
  input.value = formatDollars(minimum, decimals).slice(1);
  input.min = input.value;
  const limit = (): bigint | undefined => {
    try {
      const atomic = toAtomic(`$${input.value.trim()}`, decimals);
      return atomic >= minimum ? atomic : undefined;
    } catch {
      return undefined;
    }
  };
  const label = () => {
    const value = limit();
    button.disabled = value === undefined;
    button.textContent =
      value === undefined
        ? `The limit must be at least ${formatDollars(minimum, decimals)}`
        : (topUp
            ? `Add ${formatDollars(value, decimals)} to your limit`
            : `Approve ${formatDollars(value, decimals)} limit`) +
          ` and pay ${formatDollars(BigInt(offer.amount), decimals)}`;
  };
  input.addEventListener("input", label);
  label();
  element("limit-row").hidden = false;
  button.hidden = false;
  status(`Connected ${payer.slice(0, 6)}…${payer.slice(-4)}. Requests are paid from this limit without asking again.`);
  button.addEventListener("click", () => {
    const amount = limit();
    if (amount === undefined) return;
    button.disabled = true;
    void (async () => {
      const session = await vault.sessionKey();
      status("Confirm the spending limit in your wallet…");
      const funding = {
        provider: wallet.provider,
        payer,
        offer,
        amount,
        relayUrl: new URL(offer.extra.relay ?? "", location.href).toString(),
      };
      if (topUp) {
        const { deposit } = await topUpChannelGasless({ ...funding, channelId: topUp.channelId });
        // Re-read: another tab may have paid from the channel meanwhile.
        const current = (await vault.channel(key)) ?? topUp;
        await vault.saveChannel({ ...current, deposit: deposit.toString() });
      } else {
        // A channel of another wallet is replaced: its unspent deposit returns to that wallet by withdrawal.
        const opened = await openChannelGasless({ ...funding, signer: session.address });
        await vault.saveChannel({
          offer: key,
          channelId: opened.channelId,
          payer,
          deposit: opened.deposit.toString(),
          signedMax: "0",
          chargedKnown: "0",
        });
      }
      await pay(vault, offer, key);
    })().catch((error: unknown) => {
      button.disabled = false;
      fail(error);
    });
  });
}

/** Pays this page's request from the stored channel and shows the answer. */
async function pay(vault: SessionVault, offer: ChannelOffer, key: string): Promise<void> {
  stage("paying");
  status("Paying…");
  const session = await vault.sessionKey();
  await show(offer, await payRequest(vault, session, offer, key, location.href));
}

async function show(offer: ChannelOffer, answer: PaidAnswer): Promise<void> {
  const { response, settled, channel } = answer;
  const text = await response.text();
  const { decimals } = offer.extra;
  if (!settled) {
    stage("error");
    status(`The server refused the payment (${response.status}${errorOf(text)}).`);
    return;
  }
  const content = element("content");
  try {
    content.textContent = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    content.textContent = text;
  }
  content.hidden = false;
  document.querySelector("h1")!.textContent = "Paid";
  element("pay").hidden = false;
  element("wallets").hidden = true;
  element("limit-row").hidden = true;
  element("approve").hidden = true;
  const left = BigInt(channel.deposit) - BigInt(settled.extra.chargedTotal);
  status(
    `Paid ${formatDollars(BigInt(settled.amount), decimals)}; ${formatDollars(left, decimals)} left of your ` +
      `${formatDollars(BigInt(channel.deposit), decimals)} limit.`,
  );
  document.body.dataset.channel = channel.channelId;
  stage("paid");
}

function errorOf(text: string): string {
  try {
    const error = (JSON.parse(text) as { error?: string }).error;
    return error ? `: ${error}` : "";
  } catch {
    return "";
  }
}

main().catch(fail);
