/**
 * The networks paychan supports, in one table shared by the deploy scripts, the server, the
 * settler and the client.
 *
 * USDC addresses are Circle's native USDC deployments as listed in Circle's developer
 * documentation ("USDC contract addresses", developers.circle.com/stablecoins/usdc-contract-addresses).
 * `usdcName` / `usdcVersion` are the token's EIP-712 domain, needed to sign EIP-2612 permits and
 * EIP-3009 authorizations.
 */
export interface NetworkInfo {
  /** Name used on the command line and in configuration files. */
  readonly name: NetworkName;
  /** The network's name in hardhat.config.ts. */
  readonly hardhatName: string;
  readonly chainId: number;
  /** CAIP-2 id, as used on the wire. */
  readonly caip2: `eip155:${number}`;
  /** Circle USDC address; undefined on local networks where the mock USDC is deployed. */
  readonly usdc?: `0x${string}`;
  readonly usdcName: string;
  readonly usdcVersion: string;
  /** Blocks after which an event is considered final enough to act on. */
  readonly confirmations: number;
  /** Whether the chain is OP-stack (has the GasPriceOracle predeploy for L1 data fees). */
  readonly opStack: boolean;
  /** Environment variable holding the RPC URL. */
  readonly rpcEnv: string;
  readonly local: boolean;
}

export type NetworkName =
  "base" | "base-sepolia" | "optimism" | "optimism-sepolia" | "arbitrum-sepolia" | "localhost" | "hardhat";

export const NETWORKS: Readonly<Record<NetworkName, NetworkInfo>> = {
  base: {
    name: "base",
    hardhatName: "base",
    chainId: 8453,
    caip2: "eip155:8453",
    usdc: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    usdcName: "USD Coin",
    usdcVersion: "2",
    confirmations: 10,
    opStack: true,
    rpcEnv: "BASE_RPC_URL",
    local: false,
  },
  "base-sepolia": {
    name: "base-sepolia",
    hardhatName: "baseSepolia",
    chainId: 84532,
    caip2: "eip155:84532",
    usdc: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    usdcName: "USDC",
    usdcVersion: "2",
    confirmations: 5,
    opStack: true,
    rpcEnv: "BASE_SEPOLIA_RPC_URL",
    local: false,
  },
  optimism: {
    name: "optimism",
    hardhatName: "optimism",
    chainId: 10,
    caip2: "eip155:10",
    usdc: "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85",
    usdcName: "USD Coin",
    usdcVersion: "2",
    confirmations: 10,
    opStack: true,
    rpcEnv: "OPTIMISM_RPC_URL",
    local: false,
  },
  "optimism-sepolia": {
    name: "optimism-sepolia",
    hardhatName: "optimismSepolia",
    chainId: 11155420,
    caip2: "eip155:11155420",
    usdc: "0x5fd84259d66Cd46123540766Be93DFE6D43130D7",
    usdcName: "USDC",
    usdcVersion: "2",
    confirmations: 5,
    opStack: true,
    rpcEnv: "OPTIMISM_SEPOLIA_RPC_URL",
    local: false,
  },
  "arbitrum-sepolia": {
    name: "arbitrum-sepolia",
    hardhatName: "arbitrumSepolia",
    chainId: 421614,
    caip2: "eip155:421614",
    usdc: "0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d",
    usdcName: "USDC",
    usdcVersion: "2",
    confirmations: 5,
    opStack: false,
    rpcEnv: "ARBITRUM_SEPOLIA_RPC_URL",
    local: false,
  },
  localhost: {
    name: "localhost",
    hardhatName: "localhost",
    chainId: 31337,
    caip2: "eip155:31337",
    usdcName: "USD Coin",
    usdcVersion: "2",
    confirmations: 0,
    opStack: false,
    rpcEnv: "LOCALHOST_RPC_URL",
    local: true,
  },
  hardhat: {
    name: "hardhat",
    hardhatName: "hardhat",
    chainId: 31337,
    caip2: "eip155:31337",
    usdcName: "USD Coin",
    usdcVersion: "2",
    confirmations: 0,
    opStack: false,
    rpcEnv: "HARDHAT_RPC_URL",
    local: true,
  },
};

/** Looks a network up by its hardhat.config.ts name. */
export function networkByHardhatName(hardhatName: string): NetworkInfo | undefined {
  return Object.values(NETWORKS).find((n) => n.hardhatName === hardhatName);
}

/** Looks a network up by its CLI name or CAIP-2 id. */
export function findNetwork(nameOrCaip2: string): NetworkInfo | undefined {
  return Object.values(NETWORKS).find((n) => n.name === nameOrCaip2 || n.caip2 === nameOrCaip2);
}
