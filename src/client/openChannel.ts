import { randomBytes } from "node:crypto";
import { toHex, type Address, type Hex, type PublicClient } from "viem";
import { paymentChannelsAbi, usdcAbi } from "../chain/abi";
import { openAuthorizationNonce, receiveWithAuthorizationTypedData } from "../protocol/authorization";
import {
  openedChannelId,
  postRelay,
  sendContract,
  splitSignature,
  type ChannelTerms,
  type SendingWallet,
  type TypedDataSigner,
} from "./terms";

/** How the deposit reaches the contract. */
export type FundingMethod =
  /** `approve` then `open`: two transactions from the payer's wallet. */
  | { readonly kind: "approve"; readonly publicClient: PublicClient; readonly wallet: SendingWallet }
  /** An EIP-2612 permit signature, then `openWithPermit`: one transaction from the payer's wallet. */
  | { readonly kind: "permit"; readonly publicClient: PublicClient; readonly wallet: SendingWallet }
  /**
   * Gasless: the payer signs an EIP-3009 `ReceiveWithAuthorization` (nothing else) and the server's
   * relay sends `openWithAuthorization`, paying the gas. The payer needs the token, not ETH.
   */
  | { readonly kind: "relay"; readonly payer: TypedDataSigner; readonly fetch?: typeof fetch };

/** Parameters of {@link openChannel}. */
export interface OpenChannelParams {
  readonly terms: ChannelTerms;
  readonly funding: FundingMethod;
  /** Address whose signatures the channel accepts on vouchers: normally a generated session key. */
  readonly signer: Address;
  /** Deposit, atomic units. */
  readonly amount: bigint;
  /** Payer exit delay, seconds. Default: the terms' minWithdrawDelay, or 86,400. */
  readonly withdrawDelay?: number;
  /** How long a permit or authorization stays valid, seconds. Default 3,600. */
  readonly validForSec?: number;
}

/** An opened (or topped-up) channel. */
export interface FundingResult {
  readonly channelId: bigint;
  /** The transaction that moved the deposit. */
  readonly txHash: Hex;
  /** The channel's deposit afterwards, atomic units (for an open: the amount). */
  readonly deposit: bigint;
}

/**
 * Opens a channel paying `terms.payee` in `terms.token`, with `signer` as the voucher key. The
 * funding wallet signs only the deposit (a transaction, a permit or an EIP-3009 authorization);
 * vouchers are signed by `signer`.
 */
export async function openChannel(params: OpenChannelParams): Promise<FundingResult> {
  const { terms, funding, signer, amount } = params;
  const withdrawDelay = params.withdrawDelay ?? terms.minWithdrawDelay ?? 86_400;
  const deadline = BigInt(Math.floor(Date.now() / 1000) + (params.validForSec ?? 3_600));

  if (funding.kind === "relay") {
    if (!terms.relayUrl) throw new Error("the server offers no gasless relay (offer.extra.relay is absent)");
    const salt = toHex(randomBytes(32));
    const nonce = openAuthorizationNonce({ payee: terms.payee, signer, withdrawDelay, salt });
    const signature = await funding.payer.signTypedData(
      receiveWithAuthorizationTypedData(
        { name: terms.tokenName, version: terms.tokenVersion, chainId: terms.chainId, verifyingContract: terms.token },
        {
          from: funding.payer.address,
          to: terms.contract,
          value: amount,
          validAfter: 0n,
          validBefore: deadline,
          nonce,
        },
      ),
    );
    const { v, r, s } = splitSignature(signature);
    const result = await postRelay<{ channelId: Hex; txHash: Hex; deposit: string }>(
      funding.fetch ?? fetch,
      `${terms.relayUrl.replace(/\/+$/, "")}/open`,
      {
        payer: funding.payer.address,
        signer,
        withdrawDelay,
        amount: amount.toString(),
        payee: terms.payee,
        token: terms.token,
        authorization: { validAfter: "0", validBefore: deadline.toString(), salt, v, r, s },
      },
    );
    return { channelId: BigInt(result.channelId), txHash: result.txHash, deposit: BigInt(result.deposit) };
  }

  const { publicClient, wallet } = funding;
  let receipt;
  if (funding.kind === "approve") {
    await sendContract(publicClient, wallet, terms.token, usdcAbi, "approve", [terms.contract, amount]);
    receipt = await sendContract(publicClient, wallet, terms.contract, paymentChannelsAbi, "open", [
      terms.payee,
      terms.token,
      signer,
      withdrawDelay,
      amount,
    ]);
  } else {
    const { v, r, s } = await signPermit(publicClient, wallet, terms, amount, deadline);
    receipt = await sendContract(publicClient, wallet, terms.contract, paymentChannelsAbi, "openWithPermit", [
      terms.payee,
      terms.token,
      signer,
      withdrawDelay,
      amount,
      deadline,
      v,
      r,
      s,
    ]);
  }
  return { channelId: openedChannelId(terms.contract, receipt.logs), txHash: receipt.transactionHash, deposit: amount };
}

/** Signs an EIP-2612 permit letting the contract pull `value` from the wallet's account. */
export async function signPermit(
  publicClient: PublicClient,
  wallet: SendingWallet,
  terms: ChannelTerms,
  value: bigint,
  deadline: bigint,
): Promise<{ v: number; r: Hex; s: Hex }> {
  const owner = wallet.account.address;
  const nonce = await publicClient.readContract({
    address: terms.token,
    abi: usdcAbi,
    functionName: "nonces",
    args: [owner],
  });
  const signature = await wallet.signTypedData({
    account: wallet.account,
    domain: {
      name: terms.tokenName,
      version: terms.tokenVersion,
      chainId: terms.chainId,
      verifyingContract: terms.token,
    },
    types: {
      Permit: [
        { name: "owner", type: "address" },
        { name: "spender", type: "address" },
        { name: "value", type: "uint256" },
        { name: "nonce", type: "uint256" },
        { name: "deadline", type: "uint256" },
      ],
    },
    primaryType: "Permit",
    message: { owner, spender: terms.contract, value, nonce, deadline },
  });
  return splitSignature(signature);
}
