import type { BaseContract, ContractTransactionReceipt, ContractTransactionResponse } from "ethers";

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
