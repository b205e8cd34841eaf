// A buyer script: pays a paychan-protected API with createPayingFetch.
//
// The first 402 opens a $5 channel gaslessly through the seller's relay, funded by the wallet in
// PAYCHAN_PAYER_PRIVATE_KEY (it holds USDC and needs no ETH). Every request is then paid with a
// voucher signed by a session key kept in .paychan/session.key, within the limits set here, and
// its receipt is verified.
//
//   npm install /path/to/paychan-0.2.0.tgz viem   # the tarball `npm pack` writes in a paychan checkout
//   PAYCHAN_PAYER_PRIVATE_KEY=0x... node buyer.mjs http://127.0.0.1:8402/weather 3
import { privateKeyToAccount } from "viem/accounts";
import { createPayingFetch, fileStateStore, loadOrCreateSessionKey, openChannel, termsFromOffer } from "paychan/client";

const url = process.argv[2] ?? "http://127.0.0.1:8402/weather";
const count = Number(process.argv[3] ?? 1);
const payerKey = process.env.PAYCHAN_PAYER_PRIVATE_KEY;
if (!payerKey?.startsWith("0x")) throw new Error("set PAYCHAN_PAYER_PRIVATE_KEY to the funding wallet's key (0x...)");

const funder = privateKeyToAccount(/** @type {`0x${string}`} */ (payerKey));
const session = loadOrCreateSessionKey(".paychan/session.key"); // signs vouchers only
const pay = createPayingFetch(fetch, {
  sessionAccount: session,
  maxPerRequest: 10_000n, // $0.01
  maxTotal: 5_000_000n, // $5
  store: fileStateStore(".paychan/state.json"),
  // First 402: open a $5 channel gaslessly through the server's relay (funder: USDC, no ETH).
  channel: async (offer, url) => {
    const terms = termsFromOffer(offer, url);
    const funding = /** @type {const} */ ({ kind: "relay", payer: funder });
    return (await openChannel({ terms, funding, signer: session.address, amount: 5_000_000n })).channelId;
  },
});

for (let i = 0; i < count; i++) {
  const res = await pay(url);
  const body = await res.text();
  if (!res.ok || !res.payment) {
    console.error(`${res.status} ${body}`);
    process.exit(1);
  }
  const { channelId, charge, chargedTotal, receiptValid } = res.payment;
  console.log(
    JSON.stringify({
      status: res.status,
      body,
      channelId: `0x${channelId.toString(16)}`,
      charge: `${charge}`,
      chargedTotal: `${chargedTotal}`,
      receiptValid,
    }),
  );
}
