import type { Address, Hex, PublicClient } from "viem";
import { paymentChannelsAbi } from "../chain/abi";
import { readChannel } from "../chain/readChannel";
import { sendContract, type SendingWallet } from "./terms";

/** Parameters of {@link requestWithdrawal} and {@link finalizeWithdrawal}. */
export interface WithdrawalParams {
  readonly publicClient: PublicClient;
  /** The channel's payer (only the payer may withdraw). Needs ETH for gas. */
  readonly wallet: SendingWallet;
  readonly contract: Address;
  readonly channelId: bigint;
}

/**
 * Starts the payer's exit: after the channel's withdraw delay the payer can
 * {@link finalizeWithdrawal} and recover what the payee has not claimed. The server stops
 * accepting vouchers on the channel shortly before that time and claims what it holds.
 */
export async function requestWithdrawal(params: WithdrawalParams): Promise<{ txHash: Hex; withdrawReadyAt: number }> {
  const { publicClient, wallet, contract, channelId } = params;
  const receipt = await sendContract(publicClient, wallet, contract, paymentChannelsAbi, "requestWithdrawal", [
    channelId,
  ]);
  const record = await readChannel(publicClient, contract, channelId, { blockNumber: receipt.blockNumber });
  return { txHash: receipt.transactionHash, withdrawReadyAt: record?.withdrawReadyAt ?? 0 };
}
