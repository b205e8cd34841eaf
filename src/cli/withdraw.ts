import path from "node:path";
import { cancelWithdrawal, finalizeWithdrawal, requestWithdrawal } from "../client";
import type { FailureContext } from "../shared/failure";
import {
  channelOnChain,
  clientsFor,
  CliError,
  contractOf,
  KEYSTORE_PASSWORD_ENV,
  loadAccount,
  parseChannelId,
  parseCommandArgs,
  parseNetwork,
  PAYER_KEY_ENV,
  reportError,
  rpcContext,
  rpcUrlOf,
  usageError,
  stateDir,
  withProgress,
  CHANNEL_TRANSACTION_OPTIONS,
} from "./common";
import type { Command } from "./index";

const USAGE = `Usage: paychan withdraw --channel <id> [--finalize | --cancel] [options]

The payer's exit. Without --finalize: requests the withdrawal (the server stops accepting
vouchers shortly before the channel's withdraw delay ends, and claims what it holds). With
--finalize, once the delay has passed: closes the channel and returns the unclaimed deposit.
With --cancel: cancels a pending withdrawal, so the channel pays (and can be topped up) again.

Options:
  --channel <id>               the channel (0x-hex id) (required)
  --finalize                   complete a requested withdrawal
  --cancel                     cancel a requested withdrawal
  --network <name>             base-sepolia, optimism-sepolia, base, optimism, arbitrum-sepolia or
                               localhost (default localhost)
  --rpc <url>                  JSON-RPC endpoint (default: the network's RPC variable)
  --contract <address>         PaymentChannels contract (default: from the client state or deployments/)
  --keystore <file>            encrypted JSON keystore of the payer wallet (password from
                               ${KEYSTORE_PASSWORD_ENV}, or prompted on a terminal)
  --state <dir>                client state (default $PAYCHAN_CLIENT_DIR or ./.paychan)
  -h, --help

Sent from the payer wallet (it needs ETH for gas); its key comes from ${PAYER_KEY_ENV} or --keystore.
Prints the result as JSON.
`;

function when(unixSec: number): string {
  return new Date(unixSec * 1000).toISOString();
}

/** `paychan withdraw`. */
export const command: Command = {
  summary: "request (or --finalize, or --cancel) the payer's withdrawal of a channel's unspent deposit",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs("withdraw", USAGE, args, {
      ...CHANNEL_TRANSACTION_OPTIONS,
      finalize: { type: "boolean" },
      cancel: { type: "boolean" },
    });
    if (typeof parsed === "number") return parsed;
    const { values } = parsed;
    if (values.finalize && values.cancel)
      return usageError("withdraw", "--finalize and --cancel exclude each other", USAGE);
    let context: FailureContext = {};
    try {
      const network = parseNetwork(values.network, "localhost");
      const channelId = parseChannelId(values.channel);
      const rpcUrl = rpcUrlOf(network, values.rpc);
      context = rpcContext(network, rpcUrl);
      const payer = await loadAccount({ keystore: values.keystore });
      const { publicClient, wallet } = await clientsFor(network, rpcUrl, payer);
      const contract = contractOf(network, values.contract, channelId, path.join(stateDir(values.state), "state.json"));
      const status = await channelOnChain(publicClient, contract, channelId, network);
      if (status.status === "closed") throw new CliError(`channel ${values.channel} is already closed`, undefined, 1);
      if (status.payer.toLowerCase() !== payer.address.toLowerCase()) {
        throw new CliError(
          `only the channel's payer ${status.payer} may withdraw; this key is ${payer.address}`,
          `use the payer's key in ${PAYER_KEY_ENV} or --keystore`,
        );
      }
      const id = `0x${channelId.toString(16)}`;
      const params = { publicClient, wallet: wallet!, contract, channelId };
      if (values.cancel) {
        if (status.withdrawReadyAt === 0) {
          throw new CliError("no withdrawal is pending on this channel: nothing to cancel", undefined, 1);
        }
        const result = await withProgress(
          `cancelling the withdrawal of channel ${id} (${network.name})`,
          cancelWithdrawal(params),
        );
        process.stdout.write(
          `${JSON.stringify({ channelId: id, txHash: result.txHash, status: "open", withdrawReadyAt: 0 })}\n`,
        );
        return 0;
      }
      if (!values.finalize) {
        if (status.withdrawReadyAt !== 0) {
          throw new CliError(
            `a withdrawal is already pending; it can be finalized at ${when(status.withdrawReadyAt)}`,
            `run paychan withdraw --channel ${id} --finalize after that time`,
            1,
          );
        }
        const result = await withProgress(
          `requesting withdrawal of channel ${id} (${network.name})`,
          requestWithdrawal(params),
        );
        process.stdout.write(
          `${JSON.stringify({ channelId: id, txHash: result.txHash, withdrawReadyAt: result.withdrawReadyAt, readyAt: when(result.withdrawReadyAt) })}\n`,
        );
        process.stderr.write(
          `finalize after ${when(result.withdrawReadyAt)}: paychan withdraw --channel ${id} --finalize\n`,
        );
        return 0;
      }
      if (status.withdrawReadyAt === 0) {
        throw new CliError(
          "no withdrawal is pending on this channel",
          `request one first: paychan withdraw --channel ${id}`,
          1,
        );
      }
      const block = await publicClient.getBlock();
      if (BigInt(status.withdrawReadyAt) > block.timestamp) {
        const wait = Number(BigInt(status.withdrawReadyAt) - block.timestamp);
        throw new CliError(
          `the withdraw delay has not passed: ready at ${when(status.withdrawReadyAt)} (in ${wait} s)`,
          `run this command again after ${when(status.withdrawReadyAt)}`,
          1,
        );
      }
      const refund = status.deposit - status.claimedOnChain;
      const result = await withProgress(
        `finalizing withdrawal of channel ${id} (${network.name})`,
        finalizeWithdrawal(params),
      );
      process.stdout.write(
        `${JSON.stringify({ channelId: id, txHash: result.txHash, status: "closed", returnedAtMost: refund.toString() })}\n`,
      );
      return 0;
    } catch (error) {
      return reportError("withdraw", error, context);
    }
  },
};
