import { artifacts, ethers, network } from "hardhat";

const PAYMENT_CHANNELS = "contracts/PaymentChannels.sol:PaymentChannels";

interface StorageEntry {
  label: string;
  slot: string;
}

interface ContractOutput {
  storageLayout?: { storage: StorageEntry[] };
  evm: { deployedBytecode: { immutableReferences?: Record<string, { start: number; length: number }[]> } };
}

async function compilerOutput(): Promise<ContractOutput> {
  const buildInfo = await artifacts.getBuildInfo(PAYMENT_CHANNELS);
  if (!buildInfo) throw new Error(`no build info for ${PAYMENT_CHANNELS}`);
  const [source, name] = PAYMENT_CHANNELS.split(":");
  return buildInfo.output.contracts[source][name] as unknown as ContractOutput;
}

/** The storage slot of the PaymentChannels state variable `label`, from the compiler's storage layout. */
export async function storageSlotOf(label: string): Promise<bigint> {
  const layout = (await compilerOutput()).storageLayout;
  const entry = layout?.storage.find((e) => e.label === label);
  if (!entry) throw new Error(`no storage variable ${label} in PaymentChannels`);
  return BigInt(entry.slot);
}

/** Writes the signer record (nonce and first payer) in a PaymentChannels contract (to reach the 2^24 nonce limit cheaply). */
export async function setSignerNonce(
  channels: string,
  signer: string,
  nonce: bigint,
  firstPayer: string = ethers.ZeroAddress,
): Promise<void> {
  const base = await storageSlotOf("_signers");
  const slot = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [signer, base]));
  // A signer record is nonce (bits 0-31) | first payer (bits 32-191).
  const record = (BigInt(firstPayer) << 32n) | nonce;
  await network.provider.send("hardhat_setStorageAt", [channels, slot, ethers.toBeHex(record, 32)]);
}

/**
 * Rewrites the PaymentChannels code at `address`, storage untouched, replacing every immutable whose
 * 32-byte value is a key of `replacements` by the mapped value. Used to make the contract behave as if
 * it had been deployed on another chain id (a fork). Returns how many code locations were patched.
 */
export async function patchImmutables(address: string, replacements: Record<string, string>): Promise<number> {
  const code = (await ethers.provider.getCode(address)).slice(2);
  const table = new Map(
    Object.entries(replacements).map(([from, to]) => [
      ethers.zeroPadValue(from, 32).slice(2).toLowerCase(),
      ethers.zeroPadValue(to, 32).slice(2).toLowerCase(),
    ]),
  );
  const references = (await compilerOutput()).evm.deployedBytecode.immutableReferences ?? {};
  let patched = code;
  let count = 0;
  for (const locations of Object.values(references)) {
    for (const { start, length } of locations) {
      const at = start * 2;
      const replacement = table.get(code.slice(at, at + 64).toLowerCase());
      if (length !== 32 || replacement === undefined) continue;
      patched = patched.slice(0, at) + replacement + patched.slice(at + 64);
      count++;
    }
  }
  await network.provider.send("hardhat_setCode", [address, "0x" + patched]);
  return count;
}
