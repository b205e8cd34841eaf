import path from "node:path";
import { parseArgs } from "node:util";
import { createPublicClient, http, type Address, type PublicClient } from "viem";
import { fileStateStore, getChannelStatus } from "../client";
import type { Command } from "./index";
import { stateDir } from "./pay";

const USAGE = `Usage: paychan status [--rpc <url>] [--state <dir>]

Lists the channels in the client state (highest voucher signed, charged total known, receipts)
and, with --rpc, their on-chain deposit, claimed amount, status and pending withdrawal.
Prints one JSON object per channel.
`;

/** `paychan status`. */
export const command: Command = {
  summary: "show the client's channels (and their on-chain state with --rpc)",
  usage: USAGE,
  async run(args) {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...args],
        options: { rpc: { type: "string" }, state: { type: "string" }, help: { type: "boolean", short: "h" } },
      });
    } catch (error) {
      process.stderr.write(`paychan status: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    const { values } = parsed;
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const store = fileStateStore(path.join(stateDir(values.state), "state.json"));
    const publicClient = values.rpc ? (createPublicClient({ transport: http(values.rpc) }) as PublicClient) : undefined;
    const channels = Object.entries(store.load().channels);
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
        const chain = await getChannelStatus({ publicClient, contract, channelId: BigInt(state.channelId) });
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
