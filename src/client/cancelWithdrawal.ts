import type { Hex } from "viem";
import { paymentChannelsAbi } from "../chain/abi";
import { sendContract } from "./terms";
import type { WithdrawalParams } from "./requestWithdrawal";

/**
 * Cancels a withdrawal requested with `requestWithdrawal`: the channel stays open, the server
 * accepts its vouchers again, and top-ups (refused while a withdrawal is pending) work again.
 * Only the payer may cancel.
 */
export async function cancelWithdrawal(params: WithdrawalParams): Promise<{ txHash: Hex }> {
  const { publicClient, wallet, contract, channelId } = params;
  const receipt = await sendContract(publicClient, wallet, contract, paymentChannelsAbi, "cancelWithdrawal", [
    channelId,
  ]);
  return { txHash: receipt.transactionHash };
}
