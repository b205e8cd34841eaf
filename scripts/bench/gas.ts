import secp256k1 from "secp256k1";
import { concatHex, createPublicClient, createWalletClient, http as httpTransport, toHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi } from "../../src/chain/abi";
import { createVoucherHasher } from "../../src/protocol/fastVerify";
import { encodeClaimItem } from "../../src/protocol/voucher";
import type { HardhatNode } from "../../test/helpers/hardhatNode";
import { openChannels, PAYEE_KEY, PRICE } from "./http";

/**
 * On-chain cost per paid request, end to end: open `channels` channels (plain `open`, approval
 * given), pay `perChannel` vouchers on each off-chain (signed, never sent on-chain), then one
 * claimBatch of the latest voucher of every channel.
 *
 * The seller's first channel ever also creates its route (payee, token, withdraw delay: once per
 * seller and contract) and the contract's first token balance. One channel
 * is opened before the measured ones so that this one-time cost, reported as `priorOpenGas`, is
 * not counted per request; the measured opens are what every later buyer pays.
 */
export interface PaidRequestGas {
  readonly channels: number;
  readonly paidRequests: number;
  /** Gas of the uncounted open before the measured ones (includes the route setup on a fresh contract). */
  readonly priorOpenGas: number;
  readonly openGasEach: number[];
  readonly claimBatchGas: number;
  readonly claimGasPerPaidRequest: number;
  readonly totalGasPerPaidRequest: number;
  readonly claimedOk: boolean;
}

export async function measurePaidRequestGas(
  node: HardhatNode,
  channelCount = 10,
  perChannel = 100,
): Promise<PaidRequestGas> {
  const { PaymentChannels: contract } = node.deployments!;
  const transport = httpTransport(node.url);
  const publicClient = createPublicClient({ chain: hardhat, transport });
  const payee = createWalletClient({ account: privateKeyToAccount(PAYEE_KEY), chain: hardhat, transport });
  const prior = await openChannels(node, 1, 1_000_000n);
  const { channels, openGas } = await openChannels(node, channelCount, 1_000_000n); // $1 each: 1,000 requests of $0.001
  const hasher = createVoucherHasher(hardhat.id, contract);
  const items: Hex[] = [];
  for (const channel of channels) {
    let latest: Hex | undefined;
    for (let k = 1; k <= perChannel; k++) {
      // The paying client signs one cumulative voucher per request; the payee keeps the latest.
      const { signature, recid } = secp256k1.ecdsaSign(hasher.digest(channel.id, BigInt(k) * PRICE), channel.key);
      latest = `${toHex(signature)}${(27 + recid).toString(16)}` as Hex;
    }
    items.push(encodeClaimItem({ channelId: channel.id, cumulativeAmount: BigInt(perChannel) * PRICE }, latest!));
  }
  const hash = await payee.writeContract({
    address: contract,
    abi: paymentChannelsAbi,
    functionName: "claimBatch",
    args: [concatHex(items)],
  });
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error("claimBatch reverted");
  let claimedOk = true;
  for (const channel of channels) {
    const onChain = await publicClient.readContract({
      address: contract,
      abi: paymentChannelsAbi,
      functionName: "getChannel",
      args: [channel.id],
    });
    if (onChain.claimed !== BigInt(perChannel) * PRICE) claimedOk = false;
  }
  const paidRequests = channelCount * perChannel;
  const opens = openGas.reduce((a, b) => a + b, 0n);
  return {
    channels: channelCount,
    paidRequests,
    priorOpenGas: Number(prior.openGas[0]),
    openGasEach: openGas.map(Number),
    claimBatchGas: Number(receipt.gasUsed),
    claimGasPerPaidRequest: Math.round(Number(receipt.gasUsed) / paidRequests),
    totalGasPerPaidRequest: Math.round(Number(opens + receipt.gasUsed) / paidRequests),
    claimedOk,
  };
}
