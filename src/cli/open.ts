import path from "node:path";
import { createPublicClient, createWalletClient, http, type Chain, type PublicClient } from "viem";
import {
  channelKey,
  fileStateStore,
  loadOrCreateSessionKey,
  offerKey,
  openChannel,
  termsFromOffer,
  type FundingMethod,
} from "../client";
import { findNetwork } from "../chain/networks";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, SCHEME, type PaymentRequired } from "../protocol/headers";
import { toAtomic } from "../protocol/price";
import type { Command } from "./index";
import {
  KEYSTORE_PASSWORD_ENV,
  loadAccount,
  parseCommandArgs,
  PAYER_KEY_ENV,
  reportError,
  rpcContext,
  stateDir,
  withProgress,
} from "./common";

const USAGE = `Usage: paychan open <url> --deposit <amount> [options]

Asks <url> for its payment terms (a 402) and opens a channel to that server, with the session
key in the state directory as the voucher signer. "paychan pay" then uses it.

Options:
  --deposit <amount>           deposit, "$<dollars>" or atomic units (required)
  --funding <relay|permit|approve>
                               relay (default): gasless, the funding key signs one EIP-3009
                               authorization and the server's relay pays the gas;
                               permit / approve: transactions from the funding key (needs ETH, --rpc)
  --rpc <url>                  JSON-RPC endpoint (permit / approve)
  --withdraw-delay <seconds>   default: the server's minimum
  --state <dir>                default $PAYCHAN_CLIENT_DIR or ./.paychan
  --keystore <file>            encrypted JSON keystore of the funding wallet (password from
                               ${KEYSTORE_PASSWORD_ENV}, or prompted on a terminal)
  -h, --help

The funding key is read from ${PAYER_KEY_ENV} or --keystore, never from an argument.
Prints the channel as JSON.
`;

/** `paychan open <url>`. */
export const command: Command = {
  summary: "open a payment channel to a server (gasless through its relay by default)",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs(
      "open",
      USAGE,
      args,
      {
        deposit: { type: "string" },
        funding: { type: "string" },
        rpc: { type: "string" },
        "withdraw-delay": { type: "string" },
        state: { type: "string" },
        keystore: { type: "string" },
      },
      { positionals: true },
    );
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const funding = values.funding ?? "relay";
    if (positionals.length !== 1 || !values.deposit || !["relay", "permit", "approve"].includes(funding)) {
      process.stderr.write(`paychan open: expected one URL, --deposit, and --funding relay|permit|approve\n\n${USAGE}`);
      return 2;
    }
    if (funding !== "relay" && !values.rpc) {
      process.stderr.write(`paychan open: --funding ${funding} needs --rpc\n`);
      return 2;
    }
    let payer;
    try {
      payer = await loadAccount({ keystore: values.keystore });
    } catch (error) {
      return reportError("open", error);
    }
    const url = positionals[0];
    let answer: Response;
    try {
      answer = await fetch(url);
      await answer.arrayBuffer();
    } catch (error) {
      return reportError("open", error, { url });
    }
    const header = answer.headers.get(PAYMENT_REQUIRED_HEADER);
    const offer = header ? decodeHeader<PaymentRequired>(header).accepts.find((o) => o.scheme === SCHEME) : undefined;
    if (answer.status !== 402 || !offer) {
      process.stderr.write(`paychan open: ${url} answered ${answer.status} without a "${SCHEME}" offer\n`);
      return 1;
    }
    const terms = termsFromOffer(offer, url);
    let method: FundingMethod;
    if (funding === "relay") {
      method = { kind: "relay", payer };
    } else {
      const chain: Chain = {
        id: terms.chainId,
        name: offer.network,
        nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
        rpcUrls: { default: { http: [values.rpc as string] } },
      };
      const publicClient = createPublicClient({ chain, transport: http(values.rpc) }) as PublicClient;
      const wallet = createWalletClient({ account: payer, chain, transport: http(values.rpc) });
      method = { kind: funding as "permit" | "approve", publicClient, wallet };
    }
    const dir = stateDir(values.state);
    const session = loadOrCreateSessionKey(path.join(dir, "session.key"));
    let opened;
    try {
      opened = await withProgress(
        `opening a channel to ${terms.payee} (${funding}, ${offer.network})`,
        openChannel({
          terms,
          funding: method,
          signer: session.address,
          amount: toAtomic(values.deposit, offer.extra.decimals),
          ...(values["withdraw-delay"] ? { withdrawDelay: Number(values["withdraw-delay"]) } : {}),
        }),
      );
    } catch (error) {
      // Relayed: the server's relay failed; otherwise the payer's own RPC endpoint did.
      const network = findNetwork(offer.network);
      return reportError(
        "open",
        error,
        funding === "relay" || !network ? { url } : rpcContext(network, values.rpc as string),
      );
    }
    const store = fileStateStore(path.join(dir, "state.json"));
    const state = store.load();
    const id = `0x${opened.channelId.toString(16)}`;
    state.offers[offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset)] = id;
    // The deposit bounds every voucher "paychan pay" signs on the channel.
    state.channels[channelKey(offer.network, offer.extra.contract, opened.channelId)] = {
      channelId: id,
      signedMax: "0",
      chargedKnown: "0",
      receipts: 0,
      deposit: opened.deposit.toString(),
    };
    store.save();
    process.stdout.write(
      `${JSON.stringify({
        channelId: `0x${opened.channelId.toString(16)}`,
        txHash: opened.txHash,
        deposit: opened.deposit.toString(),
        network: offer.network,
        contract: terms.contract,
        payee: terms.payee,
        signer: session.address,
      })}\n`,
    );
    return 0;
  },
};
