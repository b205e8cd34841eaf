/**
 * `paychan/server`: put paid routes in front of an API.
 *
 * - {@link createPaymentServer} assembles everything from a validated configuration
 *   ({@link loadConfig}): SQLite store (or PostgreSQL shared by several instances, with
 *   `database.url`), verification engine, chain watcher, receipt signer, payment gate, the
 *   gasless relay when a relayer key is set, and the reverse proxy.
 * - In an Express app, {@link paywall} guards the priced routes with the server's gate and
 *   `server.relay.handle` serves the relay; `server.start()` instead runs the reverse proxy in
 *   front of `config.upstream`.
 * - In an x402 server (@x402/express, @x402/hono), {@link x402Channel} adds paychan channels
 *   beside `exact` or any other scheme: a scheme to register and an in-process facilitator.
 * - The proxy and the paywall middleware answer a browser's unpaid navigation with the HTML
 *   paywall page ({@link PaywallPage}, docs/paywall.md), whose script the package ships in
 *   dist/browser/paywall.js.
 * - Accepted vouchers are claimed by the batch settler: `startSettler` from `paychan/settler` in
 *   the same process, or `paychan settle` beside it.
 */
export { createPaymentServer } from "./app";
export type { PaymentServer, PaymentServerOptions } from "./app";
export { paymentOf, paywall } from "./paywall";
export type { PaywallOptions } from "./paywall";
export { meteredResponse } from "./meter/meteredResponse";
export { BodyMeter, RECEIPT_TRAILER } from "./meter/bodyMeter";
export type { BodyFraming } from "./meter/bodyMeter";
export { MeteredStream, StreamRegistry } from "./meter/meteredStream";
export type { BlockAnswer } from "./meter/meteredStream";
export { CONTROL_PREFIX, MeteredSocket, WebSocketMeter, refuseUpgrade, relayToUpstream } from "./meter/wsMeter";
export { CSP_REPORT_PATH, PAYWALL_SCRIPT_PATH, PaywallPage, wantsPaywallPage } from "./paywallPage";
export type { PaywallResponse } from "./paywallPage";
export {
  CHANNEL_HEADER,
  CHARGE_HEADER,
  createProxy,
  PAYER_HEADER,
  PaymentProxy,
  PRICE_HEADER,
  PRICING_HEADER,
} from "./proxy";
export type { HealthReport, ProxyOptions, RelayEndpoint } from "./proxy";
export { GaslessRelay, RelayError } from "./relay";
export type { RelayOptions, RelayResult, RelaySender } from "./relay";
export { PaymentGate } from "./gate";
export type {
  AuthorizeOptions,
  GateObserver,
  GateOptions,
  GateResult,
  OfferTerms,
  PaidRequest,
  ChannelPayment,
  ExactPayment,
  OfferedPaymentRequired,
  Payment,
  PricedIn,
  Refusal,
} from "./gate";
export { x402Channel } from "./x402/x402Channel";
export type { X402Channel } from "./x402/x402Channel";
export { ChannelSchemeServer } from "./x402/channelScheme";
export type { ChannelSchemeOptions } from "./x402/channelScheme";
export { ChannelFacilitatorClient } from "./x402/channelFacilitator";
export { ChannelPayments } from "./x402/channelPayments";
export type { ChannelPaymentsOptions, ChannelSettlement, ChannelVerdict, RequestLine } from "./x402/channelPayments";
export { ExactPayments } from "./exactPayments";
export type { ExactOutcome, ExactPaymentsOptions } from "./exactPayments";
export { FacilitatorExactSettler, LocalExactSettler } from "./exactSettler";
export type {
  ExactSender,
  ExactSettlement,
  ExactSettlementFailure,
  ExactSettler,
  FacilitatorExactSettlerOptions,
} from "./exactSettler";
export { ONE_DOLLAR, QuoteBook } from "./quoteBook";
export type { AcceptedToken, ChannelCharge, QuoteBookOptions, TokenOffer } from "./quoteBook";
export { feedRate, fixedRate } from "./rateSource";
export type { RateReading, RateSource } from "./rateSource";
export { PriceFeedReader } from "../chain/priceFeed";
export type { FeedReading } from "../chain/priceFeed";
export { RouteMatcher } from "./routes";
export { METER_DEFAULTS } from "./routes";
export type { ResolvedMeter, ResolvedRoute } from "./routes";
export { VerificationEngine } from "./engine";
export type { ChannelPrice, CheckResult, EngineOptions, Ticket } from "./engine";
export {
  CONFIG_DEFAULTS,
  CONFIG_ENV,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  loadConfig,
  parseConfig,
  PAYEE_ADDRESS_ENV,
  PAYEE_KEY_ENV,
  RELAYER_KEY_ENV,
  ServerSecrets,
} from "../shared/config";
export type {
  MeterUnit,
  ParseOptions,
  RateSetting,
  RouteMeter,
  RoutePrice,
  RouteTable,
  ServerConfig,
  TokenSettings,
} from "../shared/config";
export { createLogger, silentLogger } from "../shared/log";
export type { Logger, LoggerOptions, LogLevel } from "../shared/log";
export { findNetwork, NETWORKS } from "../chain/networks";
export type { NetworkInfo, NetworkName } from "../chain/networks";
