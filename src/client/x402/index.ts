/**
 * `paychan/x402`: paychan's `channel` scheme for x402's own clients. Register it beside any other
 * scheme, and `@x402/fetch`, `@x402/axios` or `x402Client` pay paychan servers through a channel.
 *
 * ```ts
 * import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
 * import { createChannelScheme } from "paychan/x402";
 * import { fileStateStore, loadOrCreateSessionKey } from "paychan/client";
 *
 * const scheme = createChannelScheme({
 *   sessionAccount: loadOrCreateSessionKey(".paychan/session.key"),
 *   funding: { kind: "relay", payer: funder }, // one EIP-3009 signature, no ETH
 *   deposit: 5_000_000n, // $5
 *   store: fileStateStore(".paychan/state.json"),
 * });
 * const pay = wrapFetchWithPayment(fetch, new x402Client().register("eip155:8453", scheme));
 * const res = await pay("https://api.example.com/weather?city=Lisbon");
 * ```
 */
export { createChannelScheme } from "./createChannelScheme";
export type { ChannelScheme, ChannelSchemeOptions } from "./createChannelScheme";
export { findDefaultAssetIn } from "./findDefaultAsset";
export type { DefaultAssetEntry } from "./findDefaultAsset";
