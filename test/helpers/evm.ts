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

/** Writes `_nonces[signer] = nonce` in a PaymentChannels contract (to reach the 2^24 nonce limit cheaply). */
export async function setSignerNonce(channels: string, signer: string, nonce: bigint): Promise<void> {
  const base = await storageSlotOf("_nonces");
  const slot = ethers.keccak256(ethers.AbiCoder.defaultAbiCoder().encode(["address", "uint256"], [signer, base]));
  await network.provider.send("hardhat_setStorageAt", [channels, slot, ethers.toBeHex(nonce, 32)]);
}

/**
 * Rewrites the PaymentChannels code at `address` so its cached chain id immutable reads `fakeChainId`,
 * storage untouched: the contract then behaves as if it had been deployed on chain `fakeChainId` and
 * the chain had since changed its id (a fork). Returns how many code locations were patched.
 */
export async function patchCachedChainId(address: string, fakeChainId: bigint): Promise<number> {
  const chainId = (await ethers.provider.getNetwork()).chainId;
  const current = ethers.toBeHex(chainId, 32).slice(2);
  const code = (await ethers.provider.getCode(address)).slice(2);
  const references = (await compilerOutput()).evm.deployedBytecode.immutableReferences ?? {};
  let patched = code;
  let count = 0;
  for (const locations of Object.values(references)) {
    for (const { start, length } of locations) {
      const at = start * 2;
      if (length !== 32 || code.slice(at, at + 64) !== current) continue;
      patched = patched.slice(0, at) + ethers.toBeHex(fakeChainId, 32).slice(2) + patched.slice(at + 64);
      count++;
    }
  }
  if (count === 0) throw new Error("the cached chain id immutable was not found in the deployed code");
  await network.provider.send("hardhat_setCode", [address, "0x" + patched]);
  return count;
}
