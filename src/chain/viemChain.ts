import type { Chain } from "viem";
import { arbitrumSepolia, base, baseSepolia, hardhat, optimism, optimismSepolia } from "viem/chains";
import type { NetworkInfo, NetworkName } from "./networks";

/** viem's definition of each network's chain: its id, native currency and, on OP-stack chains, formatters. */
const VIEM_CHAINS: Readonly<Record<NetworkName, Chain>> = {
  base,
  "base-sepolia": baseSepolia,
  optimism,
  "optimism-sepolia": optimismSepolia,
  "arbitrum-sepolia": arbitrumSepolia,
  localhost: hardhat,
  hardhat,
};

/**
 * The viem chain of `network`, with `rpcUrl` as its only RPC endpoint, so that no client built
 * from it ever falls back to viem's public default endpoints.
 */
export function viemChain(network: NetworkInfo, rpcUrl: string): Chain {
  return { ...VIEM_CHAINS[network.name], rpcUrls: { default: { http: [rpcUrl] } } };
}
