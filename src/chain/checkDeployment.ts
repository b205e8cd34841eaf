import { toHex, type PublicClient } from "viem";
import { VOUCHER_TYPEHASH, voucherDomainSeparator } from "../protocol/fastVerify";
import { paymentChannelsAbi } from "./abi";
import { displayUrl, transportFailure } from "./rpcFailure";
import { ChainSetupError, rpcFix, type DeploymentTarget } from "./setupError";

/**
 * The check a server or settler makes before it starts: the RPC endpoint answers, it serves the
 * configured chain, and the configured address holds a PaymentChannels contract whose vouchers
 * this code signs and verifies (same EIP-712 domain and voucher type). Any contract with code
 * (the token, say) is not enough: vouchers accepted against it could never be claimed.
 */

/** Runs one RPC read; a transport failure becomes a {@link ChainSetupError} naming the endpoint. */
async function read<T>(target: DeploymentTarget, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const failure = transportFailure(error);
    if (failure === undefined) throw error;
    throw new ChainSetupError(
      `cannot reach the ${target.network.name} JSON-RPC endpoint ${displayUrl(target.rpcUrl)}: ${failure}`,
      rpcFix(target),
    );
  }
}

/** Throws {@link ChainSetupError} unless `target` is reachable and holds a compatible PaymentChannels. */
export async function checkDeployment(client: PublicClient, target: DeploymentTarget): Promise<void> {
  const { network, contract } = target;
  const contractFix =
    `set ${target.contractSetting ?? "config.contract"} to the PaymentChannels address on ${network.name} ` +
    `(paychan deploy --network ${network.name} prints it)`;
  const chainId = await read(target, () => client.getChainId());
  if (chainId !== network.chainId) {
    throw new ChainSetupError(
      `the RPC endpoint ${displayUrl(target.rpcUrl)} serves chain ${chainId}, but network ${network.name} is chain ${network.chainId}`,
      `point ${target.rpcSetting ?? "config.rpcUrl"} at a ${network.name} endpoint, or set config.network to the chain it serves`,
    );
  }
  const code = await read(target, () => client.getCode({ address: contract }));
  if (code === undefined || code === "0x") {
    throw new ChainSetupError(`no contract at ${contract} on ${network.name}`, contractFix);
  }
  let domainSeparator: string;
  let voucherTypehash: string;
  try {
    [domainSeparator, voucherTypehash] = await read(target, () =>
      Promise.all([
        client.readContract({ address: contract, abi: paymentChannelsAbi, functionName: "domainSeparator" }),
        client.readContract({ address: contract, abi: paymentChannelsAbi, functionName: "VOUCHER_TYPEHASH" }),
      ]),
    );
  } catch (error) {
    if (error instanceof ChainSetupError) throw error;
    throw new ChainSetupError(
      `${contract} on ${network.name} is not a PaymentChannels contract (it does not answer domainSeparator() and VOUCHER_TYPEHASH())`,
      contractFix,
    );
  }
  // NOTE: the server verifies vouchers offline against this domain; a contract with another one
  // would refuse every claim of them.
  if (
    domainSeparator.toLowerCase() !== toHex(voucherDomainSeparator(network.chainId, contract)) ||
    voucherTypehash.toLowerCase() !== toHex(VOUCHER_TYPEHASH)
  ) {
    throw new ChainSetupError(
      `${contract} on ${network.name} is not a compatible PaymentChannels contract: its voucher domain or type ` +
        `differs from this version's ("paychan" version "1", Voucher(uint256 channelId,uint96 cumulativeAmount))`,
      `${contractFix}, from a deployment of the same paychan version`,
    );
  }
}
