import path from "node:path";
import { subtask } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig, NetworkUserConfig } from "hardhat/types";
import "@nomicfoundation/hardhat-toolbox";
import "hardhat-deploy";

const SOLC_VERSION = "0.8.30";

// Hardhat normally downloads solc; that download is unreachable on offline machines, so the
// compiler comes from the exact `solc` npm package pinned in package.json instead.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require("solc") as { version(): string };
  return {
    compilerPath: path.join(path.dirname(require.resolve("solc/package.json")), "soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: solc.version(),
  };
});

/** A remote network configured from the environment; it is usable only when its RPC URL is set. */
function remote(chainId: number, rpcEnv: string): NetworkUserConfig {
  const key = process.env.DEPLOYER_PRIVATE_KEY;
  return {
    chainId,
    url: process.env[rpcEnv] ?? "http://127.0.0.1:1",
    accounts: key ? [key] : [],
  };
}

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      // Cancun is live on Base, Optimism and Arbitrum; transient storage backs the reentrancy guard.
      evmVersion: "cancun",
      optimizer: { enabled: true, runs: 10_000 },
    },
  },
  networks: {
    hardhat: { chainId: 31337, hardfork: "cancun" },
    localhost: { url: "http://127.0.0.1:8545", chainId: 31337 },
    baseSepolia: remote(84532, "BASE_SEPOLIA_RPC_URL"),
    base: remote(8453, "BASE_RPC_URL"),
    optimismSepolia: remote(11155420, "OPTIMISM_SEPOLIA_RPC_URL"),
    optimism: remote(10, "OPTIMISM_RPC_URL"),
    arbitrumSepolia: remote(421614, "ARBITRUM_SEPOLIA_RPC_URL"),
  },
  namedAccounts: {
    deployer: { default: 0 },
  },
  etherscan: {
    apiKey: process.env.ETHERSCAN_API_KEY ?? "",
    // hardhat-verify 2.x knows Base, Base Sepolia, Optimism and Arbitrum Sepolia; OP Sepolia is
    // added here (Etherscan v2 serves every chain from one endpoint).
    customChains: [
      {
        network: "optimismSepolia",
        chainId: 11155420,
        urls: { apiURL: "https://api.etherscan.io/v2/api", browserURL: "https://sepolia-optimism.etherscan.io" },
      },
    ],
  },
  gasReporter: {
    enabled: process.env.REPORT_GAS === "1",
    outputFile: process.env.REPORT_GAS_FILE,
    noColors: true,
  },
  typechain: { outDir: "typechain-types", target: "ethers-v6" },
  mocha: { timeout: 120_000 },
};

export default config;
