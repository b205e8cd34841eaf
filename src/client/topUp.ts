import { randomBytes } from "node:crypto";
import { toHex, type Hex } from "viem";
import { paymentChannelsAbi, usdcAbi } from "../chain/abi";
import { readChannel } from "../chain/readChannel";
import { receiveWithAuthorizationTypedData, topUpAuthorizationNonce } from "../protocol/authorization";
import { signPermit, type FundingMethod, type FundingResult } from "./openChannel";
import { postRelay, sendContract, splitSignature, type ChannelTerms } from "./terms";

/** Parameters of {@link topUp}. */
export interface TopUpParams {
  readonly terms: ChannelTerms;
  readonly funding: FundingMethod;
  readonly channelId: bigint;
  /** Amount to add, atomic units. */
  readonly amount: bigint;
  /** How long a permit or authorization stays valid, seconds. Default 3,600. */
  readonly validForSec?: number;
}

/**
 * Adds `amount` to a channel's deposit: `approve` + `topUp`, a permit + `topUpWithPermit`, or
 * gaslessly through the server's relay (`topUpWithAuthorization`, the payer signs an EIP-3009
 * authorization only). Vouchers need no change: they are cumulative, the deposit only caps them.
 */
export async function topUp(params: TopUpParams): Promise<FundingResult> {
  const { terms, funding, channelId, amount } = params;
  const deadline = BigInt(Math.floor(Date.now() / 1000) + (params.validForSec ?? 3_600));

  if (funding.kind === "relay") {
    if (!terms.relayUrl) throw new Error("the server offers no gasless relay (offer.extra.relay is absent)");
    const salt = toHex(randomBytes(32));
    const signature = await funding.payer.signTypedData(
      receiveWithAuthorizationTypedData(
        { name: terms.tokenName, version: terms.tokenVersion, chainId: terms.chainId, verifyingContract: terms.token },
        {
          from: funding.payer.address,
          to: terms.contract,
          value: amount,
          validAfter: 0n,
          validBefore: deadline,
          nonce: topUpAuthorizationNonce(channelId, salt),
        },
      ),
    );
    const { v, r, s } = splitSignature(signature);
    const result = await postRelay<{ channelId: Hex; txHash: Hex; deposit: string }>(
      funding.fetch ?? fetch,
      `${terms.relayUrl.replace(/\/+$/, "")}/topup`,
      {
        channelId: `0x${channelId.toString(16)}`,
        amount: amount.toString(),
        authorization: { validAfter: "0", validBefore: deadline.toString(), salt, v, r, s },
      },
    );
    return { channelId, txHash: result.txHash, deposit: BigInt(result.deposit) };
  }

  const { publicClient, wallet } = funding;
  let receipt;
  if (funding.kind === "approve") {
    await sendContract(publicClient, wallet, terms.token, usdcAbi, "approve", [terms.contract, amount]);
    receipt = await sendContract(publicClient, wallet, terms.contract, paymentChannelsAbi, "topUp", [
      channelId,
      amount,
    ]);
  } else {
    const { v, r, s } = await signPermit(publicClient, wallet, terms, amount, deadline);
    receipt = await sendContract(publicClient, wallet, terms.contract, paymentChannelsAbi, "topUpWithPermit", [
      channelId,
      amount,
      deadline,
      v,
      r,
      s,
    ]);
  }
  const record = await readChannel(publicClient, terms.contract, channelId, { blockNumber: receipt.blockNumber });
  return { channelId, txHash: receipt.transactionHash, deposit: record?.deposit ?? 0n };
}
