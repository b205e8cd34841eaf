/**
 * The paychan client: open and fund channels (with a transaction, an EIP-2612 permit or gaslessly
 * through the server's relay), read their status, exit, and pay HTTP requests through a channel
 * with {@link createPayingFetch}.
 *
 * ```ts
 * const funder = privateKeyToAccount(process.env.FUNDER_KEY as Hex); // holds USDC, maybe no ETH
 * const session = loadOrCreateSessionKey(".paychan/session.key"); // signs vouchers only
 * const pay = createPayingFetch(fetch, {
 *   sessionAccount: session,
 *   maxPerRequest: 10_000n, // $0.01
 *   maxTotal: 5_000_000n, // $5
 *   store: fileStateStore(".paychan/state.json"),
 *   // First 402 from a server: open a $5 channel gaslessly through its relay.
 *   channel: async (offer, url) =>
 *     (
 *       await openChannel({
 *         terms: termsFromOffer(offer, url),
 *         funding: { kind: "relay", payer: funder },
 *         signer: session.address,
 *         amount: 5_000_000n,
 *       })
 *     ).channelId,
 * });
 * const res = await pay("https://api.example.com/weather?city=Lisbon");
 * console.log(res.status, res.payment?.charge, res.payment?.receiptValid);
 * ```
 *
 * One state file per process: two processes paying on the same channel with the same file would
 * each sign from their own copy (the server refuses the clash, and a resync recovers, but the
 * amounts are wasted round trips).
 */
export { AutoTopUp } from "./autoTopUp";
export { cancelWithdrawal } from "./cancelWithdrawal";
export type { AutoTopUpOptions, TopUpEvent } from "./autoTopUp";
export { createPayingFetch } from "./createPayingFetch";
export { consumeMeteredStream } from "./consumeMeteredStream";
export type { BlockOutcome, BlockPayer, MeteredStreamInfo, VerifiedStreamReceipt } from "./consumeMeteredStream";
export { PaidWebSocket } from "./openPaidWebSocket";
export type { ChannelResolver, PaidResponse, PayingFetch, PayingFetchOptions, PaymentInfo } from "./createPayingFetch";
export { ChannelOperationError, InsufficientDepositError, PaymentLimitError, ReceiptError } from "./errors";
export { finalizeWithdrawal } from "./finalizeWithdrawal";
export { getChannelStatus } from "./getChannelStatus";
export type { ChannelStatus } from "./getChannelStatus";
export { openChannel, signPermit } from "./openChannel";
export type { FundingMethod, FundingResult, OpenChannelParams } from "./openChannel";
export { requestWithdrawal } from "./requestWithdrawal";
export type { WithdrawalParams } from "./requestWithdrawal";
export { channelKey, fileStateStore, memoryStateStore, offerKey } from "./stateStore";
export type { ChannelState, ClientState, ClientStateStore, FileStateStoreOptions } from "./stateStore";
export { chainIdOf, termsFromOffer } from "./terms";
export type { ChannelTerms, SendingWallet, TypedDataSigner } from "./terms";
export { topUp } from "./topUp";
export type { TopUpParams } from "./topUp";
export { loadOrCreateSessionKey } from "./sessionKey";
export { findNetwork, NETWORKS } from "../chain/networks";
export type { NetworkInfo, NetworkName } from "../chain/networks";
export { paymentChannelsAbi, usdcAbi } from "../chain/abi";
