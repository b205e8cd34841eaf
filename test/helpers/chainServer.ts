import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { silentLogger, type Logger } from "../../src/shared/log";
import { startHardhatNode, type HardhatNode } from "./hardhatNode";
import { HARDHAT_KEYS } from "./hardhatKeys";
import { writeLocalConfig } from "./localServer";
import { claimedOnChain } from "./localSettle";

/**
 * A `hardhat node` with the contracts and mock USDC deployed, and a paychan server for it whose
 * gate, gasless relay and store are used in-process (its chain started, the reverse proxy not
 * listening), with a configuration a settler can claim from at once.
 */

const MINTER_KEY: Hex = HARDHAT_KEYS[1];
export const CHAIN_SERVER_PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];

export interface ChainServer {
  readonly node: HardhatNode;
  readonly publicClient: PublicClient;
  readonly contract: Address;
  readonly token: Address;
  /** The configuration file, for `startSettler(configFile, { env })`. */
  readonly configFile: string;
  /** The payee and relayer keys, as the environment gives them. */
  readonly env: Readonly<Record<string, string>>;
  readonly server: PaymentServer;
  /** Mints mock USDC to `to` and waits for it. */
  mint(to: Address, amount: bigint): Promise<void>;
  /** What has been claimed on-chain from a channel. */
  claimed(channelId: bigint): Promise<bigint>;
  /** Stops the server and the node, and removes the directory. */
  stop(): Promise<void>;
}

export async function startChainServer(options: { readonly logger?: Logger } = {}): Promise<ChainServer> {
  const node = await startHardhatNode({ deploy: true });
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-chain-server-"));
  const stop = async (server?: PaymentServer) => {
    await server?.stop().catch(() => undefined);
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const { MockUSDC: token, PaymentChannels: contract } = node.deployments!;
    const transport = httpTransport(node.url);
    const publicClient = createPublicClient({ chain: hardhat, transport }) as PublicClient;
    const minter = createWalletClient({ account: privateKeyToAccount(MINTER_KEY), chain: hardhat, transport });
    const configFile = writeLocalConfig(
      path.join(dir, "paychan.config.json"),
      { rpcUrl: node.url, contract, token },
      { routes: { "GET /unused": "$0.001" }, settler: { minUnclaimed: "0", intervalSec: 1, watch: false } },
    );
    const env = { [PAYEE_KEY_ENV]: CHAIN_SERVER_PAYEE_KEY, [RELAYER_KEY_ENV]: RELAYER_KEY };
    const server = await createPaymentServer(loadConfig(configFile, env), { logger: options.logger ?? silentLogger });
    await server.startChain();
    return {
      node,
      publicClient,
      contract,
      token,
      configFile,
      env,
      server,
      async mint(to, amount) {
        const hash = await minter.writeContract({
          address: token,
          abi: usdcAbi,
          functionName: "mint",
          args: [to, amount],
        });
        await publicClient.waitForTransactionReceipt({ hash });
      },
      claimed: (channelId) => claimedOnChain(publicClient, contract, channelId),
      stop: () => stop(server),
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
