import type { Hex } from "viem";
import { paymentChannelsAbi } from "../chain/abi";
import { sendContract } from "./terms";
import type { WithdrawalParams } from "./requestWithdrawal";

/**
 * Completes a withdrawal requested with `requestWithdrawal` once its delay has passed: the
 * channel closes and its unclaimed deposit returns to the payer.
 */
export async function finalizeWithdrawal(params: WithdrawalParams): Promise<{ txHash: Hex }> {
  const { publicClient, wallet, contract, channelId } = params;
  const receipt = await sendContract(publicClient, wallet, contract, paymentChannelsAbi, "finalizeWithdrawal", [
    channelId,
  ]);
  return { txHash: receipt.transactionHash };
}
