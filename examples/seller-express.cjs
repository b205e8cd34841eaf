// An Express API that sells two routes with paychan.
//
// paychan.config.json (the reverse proxy's file; its "upstream" is not used here) sets the
// network, contract, token, prices and database. The gasless relay lets buyers without ETH open
// channels, and the batch settler runs in this process: it claims the accepted vouchers on-chain,
// and claims a channel at once when its payer starts to withdraw. A seller who runs no settler
// (here or as `paychan settle`) is never paid.
//
//   npm install /path/to/paychan-0.2.0.tgz express   # the tarball `npm pack` writes in a paychan checkout
//   PAYCHAN_PAYEE_PRIVATE_KEY=0x... PAYCHAN_RELAYER_PRIVATE_KEY=0x... node seller-express.cjs
"use strict";

const express = require("express");
const { createPaymentServer, loadConfig, paymentOf, paywall } = require("paychan/server");
const { startSettler } = require("paychan/settler");

const CONFIG_FILE = process.env.PAYCHAN_CONFIG ?? "paychan.config.json";

async function main() {
  const config = loadConfig(CONFIG_FILE);
  const paychan = await createPaymentServer(config);
  await paychan.startChain(); // checks the RPC endpoint and the contract, then follows the chain
  const settler = await startSettler(CONFIG_FILE, { logger: paychan.logger });

  const app = express();
  // Gasless opens and top-ups. The relay reads the request body itself: no body parser before it.
  const relay = paychan.relay;
  if (relay) {
    app.post(`${relay.path}/open`, (req, res) => void relay.handle("open", req, res));
    app.post(`${relay.path}/topup`, (req, res) => void relay.handle("topup", req, res));
  }
  // Priced routes answer 402 until paid; a request gets through once its voucher is verified and stored.
  app.use(paywall({ gate: paychan.gate, decimals: config.token.decimals, routes: config.routes }));
  app.get("/weather", (_req, res) => {
    res.json({ city: "Lisbon", temperatureC: 21 });
  });
  app.post("/llm/complete", (_req, res) => {
    paymentOf(res)?.charge(1_234n); // an "upto" route charges what the work cost, at most its price
    res.json({ text: "Hello!" });
  });

  const { host, port } = config.listen;
  const server = app.listen(port, host, (error) => {
    if (error) throw error;
    paychan.logger.info("seller listening", { url: `http://${host}:${port}` });
  });
  const stop = () => {
    server.close();
    Promise.all([settler.stop(), paychan.stop()]).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
