import path from "node:path";
import { createPublicClient, http, type Address, type PublicClient } from "viem";
import { fileStateStore, getChannelStatus } from "../client";
import type { Command } from "./index";
import type { FailureContext } from "../shared/failure";
import { parseCommandArgs, parseNetwork, reportError, rpcContext, rpcUrlOf, stateDir } from "./common";

const USAGE = `Usage: paychan status [--network <name>] [--rpc <url>] [--state <dir>]

Lists the channels in the client state (highest voucher signed, charged total known, receipts)
and, with --network or --rpc, their on-chain deposit, claimed amount, status and pending
withdrawal. Prints one JSON object per channel.

Options:
  --network <name>             only this network's channels (base-sepolia, optimism-sepolia, base,
                               optimism, arbitrum-sepolia, localhost), read on-chain through its RPC
                               variable (e.g. BASE_SEPOLIA_RPC_URL) unless --rpc is given
  --rpc <url>                  JSON-RPC endpoint for the on-chain state
  --state <dir>                default $PAYCHAN_CLIENT_DIR or ./.paychan
  -h, --help
`;

/** `paychan status`. */
export const command: Command = {
  summary: "show the client's channels (and their on-chain state with --rpc)",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs("status", USAGE, args, {
      network: { type: "string" },
      rpc: { type: "string" },
      state: { type: "string" },
    });
    if (typeof parsed === "number") return parsed;
    const { values } = parsed;
    const store = fileStateStore(path.join(stateDir(values.state), "state.json"));
    let rpc = values.rpc;
    let caip2: string | undefined;
    let context: FailureContext = {};
    if (values.network !== undefined) {
      try {
        const network = parseNetwork(values.network);
        caip2 = network.caip2;
        rpc = rpcUrlOf(network, values.rpc);
        context = rpcContext(network, rpc);
      } catch (error) {
        return reportError("status", error);
      }
    }
    const publicClient = rpc ? (createPublicClient({ transport: http(rpc) }) as PublicClient) : undefined;
    const channels = Object.entries(store.load().channels).filter(([key]) => !caip2 || key.startsWith(`${caip2}:`));
    if (channels.length === 0) process.stderr.write("no channels in the client state\n");
    for (const [key, state] of channels) {
      // key = <network>:<contract>:<channel id>, network being "eip155:<id>".
      const parts = key.split(":");
      const contract = parts[2] as Address;
      const line: Record<string, unknown> = {
        channelId: state.channelId,
        network: `${parts[0]}:${parts[1]}`,
        contract,
        signedMax: state.signedMax,
        chargedKnown: state.chargedKnown,
        receipts: state.receipts,
      };
      if (publicClient) {
        let chain;
        try {
          chain = await getChannelStatus({ publicClient, contract, channelId: BigInt(state.channelId) });
        } catch (error) {
          return reportError("status", error, context);
        }
        if (!chain) line.onChain = null;
        else {
          line.onChain = {
            status: chain.status,
            deposit: chain.deposit.toString(),
            claimed: chain.claimedOnChain.toString(),
            remaining: (chain.deposit - BigInt(state.chargedKnown)).toString(),
            withdrawReadyAt: chain.withdrawReadyAt,
          };
        }
      }
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
    return 0;
  },
};
