import type { BaseContract, ContractTransactionReceipt, ContractTransactionResponse } from "ethers";
import { decodeEventLog, type Hex } from "viem";
import { paymentChannelsAbi } from "../../src/chain/abi";
import { claimsOfEvent } from "../../src/chain/events";

/** Waits for a transaction and returns its receipt (never null on the in-process Hardhat chain). */
export async function receiptOf(tx: ContractTransactionResponse | Promise<ContractTransactionResponse>) {
  const receipt: ContractTransactionReceipt | null = await (await tx).wait();
  if (!receipt) throw new Error("no receipt");
  return receipt;
}

/**
 * The arguments of every `name` event that `contract` emitted in `receipt`, in log order, as plain
 * arrays (so a whole sequence can be compared with deep equality, unlike `.to.emit().withArgs()`
 * which passes when any one event matches).
 */
export async function eventsOf(
  receipt: ContractTransactionReceipt,
  contract: BaseContract,
  name: string,
): Promise<unknown[][]> {
  const address = (await contract.getAddress()).toLowerCase();
  const out: unknown[][] = [];
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== address) continue;
    const parsed = contract.interface.parseLog(log);
    if (parsed?.name === name) out.push(parsed.args.toArray());
  }
  return out;
}

/** The names of all events `contract` emitted in `receipt`, in log order. */
export async function eventNamesOf(receipt: ContractTransactionReceipt, contract: BaseContract): Promise<string[]> {
  const address = (await contract.getAddress()).toLowerCase();
  const out: string[] = [];
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== address) continue;
    const parsed = contract.interface.parseLog(log);
    if (parsed) out.push(parsed.name);
  }
  return out;
}

/**
 * Every claim `channels` reported in `receipt`, in log order, as [channelId, claimed] pairs: a
 * ChannelClaimed (claim, close) gives one, a batch's ChannelsClaimed gives one per claimed item.
 */
export async function claimsOf(receipt: ContractTransactionReceipt, channels: BaseContract): Promise<bigint[][]> {
  const address = (await channels.getAddress()).toLowerCase();
  const out: bigint[][] = [];
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== address || log.topics.length === 0) continue;
    const event = decodeEventLog({
      abi: paymentChannelsAbi,
      data: log.data as Hex,
      topics: log.topics as [Hex, ...Hex[]],
    });
    for (const { channelId, claimed } of claimsOfEvent(event)) out.push([channelId, claimed]);
  }
  return out;
}
