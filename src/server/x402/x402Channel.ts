import type { PaymentServer } from "../app";
import { ChannelFacilitatorClient } from "./channelFacilitator";
import { ChannelPayments } from "./channelPayments";
import { ChannelSchemeServer } from "./channelScheme";
import type { Network } from "./x402Types";

/** What a seller registers with x402's resource server to accept paychan channels. */
export interface X402Channel {
  /** CAIP-2 network of the channels, e.g. "eip155:8453". */
  readonly network: Network;
  /** The scheme "channel": `resourceServer.register(channel.network, channel.scheme)`. */
  readonly scheme: ChannelSchemeServer;
  /** The in-process facilitator announcing the scheme: pass it to `new x402ResourceServer([...])`. */
  readonly facilitator: ChannelFacilitatorClient;
  /** This server's payee, the `payTo` of every channel route. */
  readonly payTo: string;
}

/**
 * paychan channels for an x402 server (@x402/express, @x402/hono or x402ResourceServer itself),
 * beside `exact` or any other scheme, from a paychan server (`createPaymentServer`, with
 * `startChain()` called; its reverse proxy need not run). Vouchers are verified against the
 * server's engine and stored in its store (SQLite: refused on a store several instances share,
 * see docs/scaling.md); run the settler (`startSettler` from
 * `paychan/settler`, or `paychan settle`) to claim them.
 *
 * @example
 * const paychan = await createPaymentServer(loadConfig("paychan.config.json"));
 * await paychan.startChain();
 * const channel = x402Channel(paychan);
 * const resourceServer = new x402ResourceServer([channel.facilitator, exactFacilitator])
 *   .register(channel.network, channel.scheme)
 *   .register("eip155:8453", new ExactEvmScheme());
 * app.use(paymentMiddleware({ "GET /weather": { accepts: [
 *   { scheme: "channel", network: channel.network, payTo: channel.payTo, price: "$0.001" },
 *   { scheme: "exact", network: "eip155:8453", payTo: channel.payTo, price: "$0.001" },
 * ] } }, resourceServer));
 * await startSettler("paychan.config.json");
 */
export function x402Channel(server: PaymentServer): X402Channel {
  if (server.store.chargeVoucher) {
    // x402 reserves a charge at verify and takes it back at cancel, in this process's engine; on a
    // store several instances share, the database decides each charge when it is committed, and
    // a reservation held in one instance's memory would let another charge the same funds.
    throw new Error(
      "x402Channel needs a store of its own (SQLite): on a PostgreSQL store shared by several " +
        "instances, take channel payments through paychan's proxy or middleware (docs/scaling.md)",
    );
  }
  let channel = created.get(server);
  if (channel === undefined) {
    channel = create(server);
    created.set(server, channel);
  }
  return channel;
}

/**
 * One plug-in per paychan server, however often it is asked for: its charged totals count the
 * reservations of requests still in their handlers, which a second instance would not see.
 */
const created = new WeakMap<PaymentServer, X402Channel>();

function create(server: PaymentServer): X402Channel {
  const { config } = server;
  const network = config.network.caip2 as Network;
  const payments = new ChannelPayments({
    engine: server.engine,
    store: server.store,
    receipts: server.receipts,
    network,
    lookupChannel: (channelId) => server.lookupChannel(channelId),
    retryWindowMs: config.retryWindowMs,
    observer: server.metrics.observer,
  });
  return {
    network,
    payTo: config.payee,
    scheme: new ChannelSchemeServer({
      payments,
      network,
      asset: config.token.address,
      payee: config.payee,
      decimals: config.token.decimals,
      offer: (price, pricing) => server.gate.offer(price, pricing),
    }),
    facilitator: new ChannelFacilitatorClient(payments, network),
  };
}
