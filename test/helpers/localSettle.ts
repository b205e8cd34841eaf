import { createWalletClient, http as httpTransport, type Address, type Hex, type PublicClient } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { TransactionSender } from "../../src/chain/sender";
import { Settler, type BatchReport } from "../../src/settler/settler";
import type { PaymentStore } from "../../src/store/types";

/** Mints `amount` of the mock USDC at `token` to `to` with `minterKey`, and waits for it. */
export async function mintUsdc(
  publicClient: PublicClient,
  rpcUrl: string,
  minterKey: Hex,
  token: Address,
  to: Address,
  amount: bigint,
): Promise<void> {
  const minter = createWalletClient({
    account: privateKeyToAccount(minterKey),
    chain: hardhat,
    transport: httpTransport(rpcUrl),
  });
  const hash = await minter.writeContract({ address: token, abi: usdcAbi, functionName: "mint", args: [to, amount] });
  await publicClient.waitForTransactionReceipt({ hash });
}

/**
 * Claims what `store` holds for `channelId` with a settler signing with `payeeKey` (one pass,
 * once the channel is a candidate), and reads what the chain then says was claimed.
 */
export async function settleChannel(
  publicClient: PublicClient,
  rpcUrl: string,
  payeeKey: Hex,
  store: PaymentStore,
  contract: Address,
  channelId: bigint,
  onError?: (cause: string, error: unknown) => void,
): Promise<{ readonly reports: BatchReport[]; readonly claimed: bigint }> {
  const payee = privateKeyToAccount(payeeKey);
  const settler = new Settler({
    publicClient,
    sender: new TransactionSender({
      publicClient,
      walletClient: createWalletClient({ account: payee, chain: hardhat, transport: httpTransport(rpcUrl) }),
      account: payee,
      chain: hardhat,
      confirmations: 0,
      pollIntervalMs: 100,
      timeoutMs: 30_000,
    }),
    store,
    contract,
    policy: { minUnclaimed: 0n, maxAgeSec: 0, maxBatchSize: 50 },
    opStack: false,
    intervalSec: 3600,
    ...(onError ? { onError } : {}),
  });
  const deadline = Date.now() + 20_000;
  while (!settler.candidates().some((c) => c.channelId === channelId)) {
    if (Date.now() > deadline) throw new Error("the channel never became a claim candidate");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const reports = await settler.runOnce();
  return { reports, claimed: await claimedOnChain(publicClient, contract, channelId) };
}

/** What the chain shows as claimed from `channelId`. */
export async function claimedOnChain(
  publicClient: PublicClient,
  contract: Address,
  channelId: bigint,
): Promise<bigint> {
  const channel = await publicClient.readContract({
    address: contract,
    abi: paymentChannelsAbi,
    functionName: "getChannel",
    args: [channelId],
  });
  return channel.claimed;
}
