import path from "node:path";
import { parseArgs } from "node:util";
import { createPublicClient, createWalletClient, http, type Chain, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  fileStateStore,
  loadOrCreateSessionKey,
  offerKey,
  openChannel,
  termsFromOffer,
  type FundingMethod,
} from "../client";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, SCHEME, type PaymentRequired } from "../protocol/headers";
import { toAtomic } from "../protocol/price";
import type { Command } from "./index";
import { PAYER_KEY_ENV, stateDir } from "./pay";

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
  -h, --help

The funding key is read from ${PAYER_KEY_ENV}. Prints the channel as JSON.
`;

/** `paychan open <url>`. */
export const command: Command = {
  summary: "open a payment channel to a server (gasless through its relay by default)",
  usage: USAGE,
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...args],
        allowPositionals: true,
        options: {
          deposit: { type: "string" },
          funding: { type: "string" },
          rpc: { type: "string" },
          "withdraw-delay": { type: "string" },
          state: { type: "string" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (error) {
      process.stderr.write(`paychan open: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const { values, positionals } = parsed;
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const funding = values.funding ?? "relay";
    if (positionals.length !== 1 || !values.deposit || !["relay", "permit", "approve"].includes(funding)) {
      process.stderr.write(`paychan open: expected one URL, --deposit, and --funding relay|permit|approve\n\n${USAGE}`);
      return 2;
    }
    if (funding !== "relay" && !values.rpc) {
      process.stderr.write(`paychan open: --funding ${funding} needs --rpc\n`);
      return 2;
    }
    const key = process.env[PAYER_KEY_ENV];
    if (!key || !/^0x[0-9a-fA-F]{64}$/.test(key)) {
      process.stderr.write(`paychan open: set ${PAYER_KEY_ENV} to the funding wallet's 0x-hex private key\n`);
      return 2;
    }
    const url = positionals[0];
    const answer = await fetch(url);
    await answer.arrayBuffer();
    const header = answer.headers.get(PAYMENT_REQUIRED_HEADER);
    const offer = header ? decodeHeader<PaymentRequired>(header).accepts.find((o) => o.scheme === SCHEME) : undefined;
    if (answer.status !== 402 || !offer) {
      process.stderr.write(`paychan open: ${url} answered ${answer.status} without a "${SCHEME}" offer\n`);
      return 1;
    }
    const terms = termsFromOffer(offer, url);
    const payer = privateKeyToAccount(key as Hex);
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
    const opened = await openChannel({
      terms,
      funding: method,
      signer: session.address,
      amount: toAtomic(values.deposit, offer.extra.decimals),
      ...(values["withdraw-delay"] ? { withdrawDelay: Number(values["withdraw-delay"]) } : {}),
    });
    const store = fileStateStore(path.join(dir, "state.json"));
    store.load().offers[offerKey(offer.network, offer.extra.contract, offer.payTo, offer.asset)] =
      `0x${opened.channelId.toString(16)}`;
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
