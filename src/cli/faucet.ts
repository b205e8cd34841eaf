import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import {
  createWalletClient,
  formatUnits,
  getAddress,
  http,
  isAddress,
  parseEther,
  type Address,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { usdcAbi } from "../chain/abi";
import type { NetworkInfo } from "../chain/networks";
import type { FailureContext } from "../shared/failure";
import {
  clientsFor,
  CliError,
  loadKey,
  parseCommandArgs,
  parseNetwork,
  parseTokenAmount,
  PAYER_KEY_ENV,
  reportError,
  rpcContext,
  rpcUrlOf,
  withProgress,
} from "./common";
import type { Command } from "./index";

const REPO_ROOT = path.resolve(__dirname, "..", "..");

const USAGE = `Usage: paychan faucet [<address>] [--amount <tokens>] [--eth <ether>] [options]

Local development only: mints the mock USDC of a local Hardhat node (MockUSDC, which lets anyone
mint) to <address>, and with --eth sends it ETH for gas from the node's first development
account. Refused on every other network. Prints the result as JSON.

Options:
  <address>                    who receives (default: the address of ${PAYER_KEY_ENV})
  --amount <tokens>            token units to mint: 100 = 100 USDC ("$100" also works) (default 100)
  --eth <ether>                also send this much ETH, e.g. 1 (default: none)
  --token <address>            the mock token (default: deployments/localhost/MockUSDC.json, as
                               written by "npx hardhat node"; a server's 402 names it in "asset")
  --network localhost          the only network accepted (default)
  --rpc <url>                  the node (default $LOCALHOST_RPC_URL, else http://127.0.0.1:8545)
  -h, --help
`;

/** Why the faucet refuses `network`, and where tokens come from there. */
function refuseNetwork(network: NetworkInfo): CliError {
  const testnet = network.name.endsWith("-sepolia");
  return new CliError(
    `the faucet mints the local mock USDC and works on localhost only; ${network.name} holds Circle's USDC`,
    testnet
      ? `get ${network.name} test USDC from Circle's faucet (https://faucet.circle.com) and ETH from a ${network.name} faucet`
      : `${network.name} is a real network: fund the wallet with real USDC and ETH`,
  );
}

/** The recipient: the argument, else the payer key's address. */
async function recipientOf(positional: string | undefined): Promise<Address> {
  if (positional !== undefined) {
    if (!isAddress(positional, { strict: false })) {
      throw new CliError(`"${positional}" is not an address`, "pass a 0x-prefixed 20-byte address");
    }
    return getAddress(positional);
  }
  if (!process.env[PAYER_KEY_ENV]) {
    throw new CliError(
      "no address to fund",
      `pass it (paychan faucet 0x…), or set ${PAYER_KEY_ENV} to fund the payer wallet`,
    );
  }
  return privateKeyToAccount(await loadKey()).address;
}

/** The mock token: --token, else the local deployment record. */
function tokenOf(option: string | undefined): Address {
  if (option !== undefined) {
    if (!isAddress(option, { strict: false })) throw new CliError(`--token "${option}" is not an address`);
    return getAddress(option);
  }
  const file = path.join(REPO_ROOT, "deployments", "localhost", "MockUSDC.json");
  if (!existsSync(file)) {
    throw new CliError(
      "no MockUSDC known on localhost",
      'pass --token <address> (a server\'s 402 offer names it in "asset"), or start the node with npx hardhat node',
      1,
    );
  }
  return getAddress((JSON.parse(readFileSync(file, "utf8")) as { address: string }).address);
}

/** Checks that `rpcUrl` is a local development node and answers its first unlocked account. */
async function devAccountOf(publicClient: PublicClient, network: NetworkInfo, rpcUrl: string): Promise<Address> {
  const chainId = await publicClient.getChainId();
  if (chainId !== network.chainId) {
    throw new CliError(
      `${rpcUrl} serves chain ${chainId}, not a local development chain (${network.chainId}): the faucet mints on a local node only`,
      "point --rpc at a local Hardhat node (npx hardhat node)",
      1,
    );
  }
  const accounts = await createWalletClient({ transport: http(rpcUrl) }).getAddresses();
  if (accounts.length === 0) {
    throw new CliError(
      `the node at ${rpcUrl} has no unlocked development account to send from`,
      "run a Hardhat node (npx hardhat node), whose development accounts are unlocked",
      1,
    );
  }
  return getAddress(accounts[0]);
}

/** `paychan faucet`. */
export const command: Command = {
  summary: "local only: mint mock USDC (and send ETH) to an address on a Hardhat node",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs(
      "faucet",
      USAGE,
      args,
      {
        amount: { type: "string" },
        eth: { type: "string" },
        token: { type: "string" },
        network: { type: "string" },
        rpc: { type: "string" },
      },
      { positionals: true },
    );
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    let context: FailureContext = {};
    try {
      if (positionals.length > 1) throw new CliError("expected at most one address", "paychan faucet [<address>]");
      const network = parseNetwork(values.network, "localhost");
      if (!network.local) throw refuseNetwork(network);
      let eth = 0n;
      if (values.eth !== undefined) {
        if (!/^\d+(\.\d{1,18})?$/.test(values.eth)) {
          throw new CliError(`--eth "${values.eth}" is not an amount of ether`, "pass e.g. --eth 1 or --eth 0.5");
        }
        eth = parseEther(values.eth);
      }
      const to = await recipientOf(positionals[0]);
      const token = tokenOf(values.token);
      const rpcUrl = rpcUrlOf(network, values.rpc);
      context = rpcContext(network, rpcUrl);
      const { publicClient } = await clientsFor(network, rpcUrl);
      const from = await devAccountOf(publicClient, network, rpcUrl);
      const decimals = await publicClient
        .readContract({ address: token, abi: usdcAbi, functionName: "decimals" })
        .catch(() => undefined);
      if (decimals === undefined) {
        throw new CliError(`${token} is not a token on this node`, "pass --token with the MockUSDC address", 1);
      }
      const amount = parseTokenAmount(values.amount ?? "100", decimals);
      // NOTE: only a token that lets anyone mint (the mock) gets here; Circle's USDC refuses.
      const { request } = await publicClient
        .simulateContract({ account: from, address: token, abi: usdcAbi, functionName: "mint", args: [to, amount] })
        .catch(() => {
          throw new CliError(
            `${token} is not the mock USDC: it does not let ${from} mint`,
            "pass --token with the MockUSDC address (deployments/localhost/MockUSDC.json)",
            1,
          );
        });
      // The node's development accounts are unlocked: it signs (eth_sendTransaction).
      const { viemChain } = await import("../chain/viemChain");
      const wallet = createWalletClient({ account: from, chain: viemChain(network, rpcUrl), transport: http(rpcUrl) });
      await withProgress(
        `minting ${formatUnits(amount, decimals)} to ${to} (${network.name})`,
        (async () => {
          const hash = await wallet.writeContract(request);
          await publicClient.waitForTransactionReceipt({ hash });
          if (eth > 0n) {
            const sent = await wallet.sendTransaction({ to, value: eth });
            await publicClient.waitForTransactionReceipt({ hash: sent });
          }
        })(),
      );
      const [balance, ethBalance] = await Promise.all([
        publicClient.readContract({ address: token, abi: usdcAbi, functionName: "balanceOf", args: [to] }),
        publicClient.getBalance({ address: to }),
      ]);
      process.stdout.write(
        `${JSON.stringify({
          address: to,
          token,
          minted: amount.toString(),
          balance: balance.toString(),
          ethSent: eth.toString(),
          ethBalance: ethBalance.toString(),
          network: network.name,
        })}\n`,
      );
      return 0;
    } catch (error) {
      return reportError("faucet", error, context);
    }
  },
};
