/**
 * `paychan/protocol`: the wire format and the cryptography shared by buyers and sellers, with no
 * server or chain dependency. The voucher's EIP-712 definition, the x402 v2 header codecs of the
 * `channel` scheme, receipts (sign and verify offline), reason codes, prices, and the fast voucher
 * verification path (libsecp256k1 when it loads, pure JS otherwise). docs/protocol.md describes
 * the wire format; docs/errors.md every reason code.
 */
export {
  CHANNEL_NONCE_BITS,
  channelIdFor,
  CLAIM_ITEM_SIZE,
  CLAIM_RECORD_SIZE,
  decodeClaimRecords,
  DOMAIN_NAME,
  DOMAIN_VERSION,
  encodeClaimItem,
  MAX_AMOUNT,
  signerOfChannel,
  toCompactSignature,
  voucherDigest,
  voucherDomain,
  VOUCHER_TYPE_STRING,
  VOUCHER_TYPES,
  voucherTypedData,
} from "./voucher";
export type { Voucher, VoucherDomain } from "./voucher";
export {
  channelIdHex,
  decodeHeader,
  decodePaymentSignature,
  encodeHeader,
  encodePaymentSignature,
  MAX_PAYMENT_HEADER_BYTES,
  offerTerms,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  SCHEME,
  X402_VERSION,
} from "./headers";
export type {
  ChannelOffer,
  ChannelOfferExtra,
  ChannelView,
  DecodedVoucher,
  DecodeResult,
  PaymentPayload,
  PaymentRequired,
  Pricing,
  ResourceInfo,
  SettleExtra,
  SettleResponse,
  VoucherPayload,
} from "./headers";
export {
  parseReceipt,
  RECEIPT_DOMAIN_NAME,
  RECEIPT_DOMAIN_VERSION,
  RECEIPT_TYPE_STRING,
  RECEIPT_TYPES,
  receiptDigest,
  ReceiptSigner,
  requestHash,
  verifyReceipt,
} from "./receipt";
export type { Receipt, ReceiptSignerOptions, SignedReceipt } from "./receipt";
export { isReasonCode, REASONS, statusOf } from "./reasons";
export type { ReasonCode, ReasonStatus } from "./reasons";
export { dollarsToToken, formatDollars, formatRate, parseRate, RATE_DECIMALS, rateFromAnswer, toAtomic } from "./price";
export {
  parseQuote,
  QUOTE_DOMAIN_NAME,
  QUOTE_DOMAIN_VERSION,
  QUOTE_NEVER_EXPIRES,
  QUOTE_TYPE_STRING,
  QUOTE_TYPES,
  quoteDigest,
  quoteTypedData,
  recoverQuoteSigner,
  signQuote,
  verifyQuote,
} from "./quote";
export type { Quote, SignedQuote } from "./quote";
export type { Price } from "./price";
export {
  createVoucherHasher,
  createVoucherSignatureVerifier,
  parseVoucherSignature,
  verifyVoucherSignature,
  voucherDomainSeparator,
  VOUCHER_TYPEHASH,
} from "./fastVerify";
export type {
  ParsedVoucherSignature,
  SignatureVerdict,
  VoucherHasher,
  VoucherRejection,
  VoucherVerification,
} from "./fastVerify";
export { createSignerRecoverer } from "./recoverSigner";
export type { SignerRecoverer, SignerRecovererOptions } from "./recoverSigner";
export { isNativeSecp256k1Available, SECP256K1_BACKEND_ENV, SECP256K1_FALLBACK_WARNING } from "./secp256k1";
export type { Secp256k1Backend } from "./secp256k1";
export {
  OPEN_AUTHORIZATION_TYPE_STRING,
  openAuthorizationNonce,
  RECEIVE_WITH_AUTHORIZATION_TYPES,
  receiveWithAuthorizationTypedData,
  TOPUP_AUTHORIZATION_TYPE_STRING,
  topUpAuthorizationNonce,
} from "./authorization";
export type { OpenAuthorizationParams, ReceiveWithAuthorization, TokenDomain } from "./authorization";
export type { ChannelRecord } from "./channel";
export {
  decodeExactPayment,
  EXACT_SCHEME,
  EXACT_VALIDITY_MARGIN_SEC,
  TRANSFER_WITH_AUTHORIZATION_TYPES,
  transferWithAuthorizationTypedData,
  verifyExactPayment,
} from "./exact";
export type {
  DecodedExactPayment,
  ExactOffer,
  ExactPayload,
  ExactSettleResponse,
  ExactTerms,
  TransferWithAuthorization,
} from "./exact";
export {
  formatMeterHeader,
  METER_HEADER,
  parseMeterHeader,
  PAYMENT_RECEIPT_EVENT,
  PAYMENT_REQUIRED_EVENT,
  SseParser,
  sseEvent,
  STREAM_HEADER,
  USAGE_EVENT,
} from "./stream";
export type { SseEvent, StreamEnd, StreamMessage, StreamReceipt, VoucherRequest } from "./stream";
