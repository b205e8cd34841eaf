import path from "node:path";
import { channelKey, fileStateStore, termsFromOffer, topUp, type ChannelTerms, type FundingMethod } from "../client";
import { decodeHeader, PAYMENT_REQUIRED_HEADER, SCHEME, type PaymentRequired } from "../protocol/headers";
import { transportFailure } from "../chain/rpcFailure";
import type { FailureContext } from "../shared/failure";
import {
  channelOnChain,
  clientsFor,
  CliError,
  contractOf,
  errorText,
  KEYSTORE_PASSWORD_ENV,
  loadAccount,
  parseChannelId,
  parseCommandArgs,
  parseNetwork,
  parseTokenAmount,
  PAYER_KEY_ENV,
  reportError,
  rpcContext,
  rpcUrlOf,
  stateDir,
  withProgress,
  CHANNEL_TRANSACTION_OPTIONS,
} from "./common";
import type { Command } from "./index";

const USAGE = `Usage: paychan topup --channel <id> --amount <tokens> [options]

Adds to a channel's deposit. The payer wallet signs; vouchers need no change.

Options:
  --channel <id>               the channel (0x-hex id, as printed by paychan open / status) (required)
  --amount <tokens>            amount to add in token units: 5 = 5 USDC ("$5" also works) (required)
  --network <name>             base-sepolia, optimism-sepolia, base, optimism, arbitrum-sepolia or
                               localhost (default localhost)
  --funding <relay|permit|approve>
                               relay: gasless, the payer signs one EIP-3009 authorization and the
                               server's relay (found from --url) pays the gas (default with --url);
                               permit (default otherwise) / approve: transactions from the payer
                               wallet, which needs ETH for gas
  --url <url>                  a paid URL of the server (its 402 names the relay); needed for relay
  --rpc <url>                  JSON-RPC endpoint (default: the network's RPC variable, e.g.
                               BASE_SEPOLIA_RPC_URL; http://127.0.0.1:8545 for localhost)
  --contract <address>         PaymentChannels contract (default: from the client state or deployments/)
  --keystore <file>            encrypted JSON keystore of the payer wallet (password from
                               ${KEYSTORE_PASSWORD_ENV}, or prompted on a terminal)
  --state <dir>                client state (default $PAYCHAN_CLIENT_DIR or ./.paychan)
  -h, --help

The payer key comes from ${PAYER_KEY_ENV} or --keystore, never from an argument.
A top-up is refused while a withdrawal is pending. Prints the result as JSON.
`;

async function termsFromUrl(url: string, caip2: string): Promise<ChannelTerms> {
  let answer: Response;
  try {
    answer = await fetch(url);
    await answer.arrayBuffer();
  } catch (error) {
    throw new CliError(
      `cannot reach ${url}: ${transportFailure(error) ?? errorText(error)}`,
      "check --url, and that the server runs and is reachable from here",
      1,
    );
  }
  const header = answer.headers.get(PAYMENT_REQUIRED_HEADER);
  const offer = header ? decodeHeader<PaymentRequired>(header).accepts.find((o) => o.scheme === SCHEME) : undefined;
  if (answer.status !== 402 || !offer) {
    throw new CliError(
      `${url} answered ${answer.status} without a "${SCHEME}" offer`,
      "pass --url with a paid route of the server",
      1,
    );
  }
  if (offer.network !== caip2) {
    throw new CliError(`${url} is paid on ${offer.network}, not ${caip2}`, "pass the matching --network");
  }
  return termsFromOffer(offer, url);
}

/** `paychan topup`. */
export const command: Command = {
  summary: "add to a channel's deposit (gasless through the server's relay, or permit / approve)",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs("topup", USAGE, args, {
      ...CHANNEL_TRANSACTION_OPTIONS,
      amount: { type: "string" },
      funding: { type: "string" },
      url: { type: "string" },
    });
    if (typeof parsed === "number") return parsed;
    const { values } = parsed;
    let context: FailureContext = {};
    try {
      const network = parseNetwork(values.network, "localhost");
      const channelId = parseChannelId(values.channel);
      if (!values.amount) throw new CliError("--amount is required", "pass --amount <tokens>, e.g. --amount 5");
      const funding = values.funding ?? (values.url ? "relay" : "permit");
      if (!["relay", "permit", "approve"].includes(funding)) {
        throw new CliError(`--funding "${funding}" is not relay, permit or approve`);
      }
      if (funding === "relay" && !values.url) {
        throw new CliError("--funding relay needs the server's URL", "pass --url <a paid URL of the server>");
      }
      const rpcUrl = rpcUrlOf(network, values.rpc);
      context = rpcContext(network, rpcUrl);
      const payer = await loadAccount({ keystore: values.keystore });
      const { publicClient, wallet } = await clientsFor(network, rpcUrl, payer);
      const stateFile = path.join(stateDir(values.state), "state.json");

      let terms: ChannelTerms;
      if (values.url) terms = await termsFromUrl(values.url, network.caip2);
      else {
        const contract = contractOf(network, values.contract, channelId, stateFile);
        terms = {
          chainId: network.chainId,
          contract,
          token: "0x0000000000000000000000000000000000000000",
          payee: "0x0000000000000000000000000000000000000000",
          tokenName: network.usdcName,
          tokenVersion: network.usdcVersion,
        };
      }
      const status = await channelOnChain(publicClient, terms.contract, channelId, network);
      if (status.status !== "open") throw new CliError(`channel ${values.channel} is closed`, "open a new channel", 1);
      if (status.withdrawReadyAt !== 0) {
        throw new CliError(
          `channel ${values.channel} has a pending withdrawal; a top-up is refused until it is cancelled`,
          `cancel it with paychan withdraw --cancel --channel ${values.channel}${values.network ? ` --network ${values.network}` : ""}, ` +
            "or finalize it with paychan withdraw --finalize once its delay has passed",
          1,
        );
      }
      if (status.payer.toLowerCase() !== payer.address.toLowerCase() && funding !== "approve") {
        process.stderr.write(`note: ${payer.address} tops up a channel whose payer is ${status.payer}\n`);
      }
      terms = { ...terms, token: status.token, payee: status.payee };
      const decimals = 6;
      const amount = parseTokenAmount(values.amount, decimals);
      const method: FundingMethod =
        funding === "relay"
          ? { kind: "relay", payer }
          : { kind: funding as "permit" | "approve", publicClient, wallet: wallet! };
      const result = await withProgress(
        `topping up channel ${values.channel} by ${values.amount} (${funding}, ${network.name})`,
        topUp({ terms, funding: method, channelId, amount }),
      );
      // "paychan pay" signs no voucher above the deposit it knows: tell it about this one.
      const store = fileStateStore(stateFile);
      const known = store.load().channels[channelKey(network.caip2, terms.contract, channelId)];
      if (known && (known.deposit === undefined || BigInt(known.deposit) < result.deposit)) {
        known.deposit = result.deposit.toString();
        store.save();
      }
      process.stdout.write(
        `${JSON.stringify({
          channelId: `0x${channelId.toString(16)}`,
          txHash: result.txHash,
          added: amount.toString(),
          deposit: result.deposit.toString(),
          network: network.name,
        })}\n`,
      );
      return 0;
    } catch (error) {
      return reportError("topup", error, context);
    }
  },
};
