/**
 * The paychan client: open and fund channels (with a transaction, an EIP-2612 permit or gaslessly
 * through the server's relay), read their status, exit, and pay HTTP requests through a channel
 * with {@link createPayingFetch}.
 */
export { createPayingFetch } from "./createPayingFetch";
export type { ChannelResolver, PaidResponse, PayingFetch, PayingFetchOptions, PaymentInfo } from "./createPayingFetch";
export { ChannelOperationError, PaymentLimitError, ReceiptError } from "./errors";
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
