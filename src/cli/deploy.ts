import { spawn } from "node:child_process";
import path from "node:path";
import {
  CliError,
  KEYSTORE_PASSWORD_ENV,
  loadKey,
  parseCommandArgs,
  parseNetwork,
  reportError,
  rpcUrlOf,
} from "./common";
import type { Command } from "./index";

/** Environment variable hardhat.config.ts reads the deployer key from. */
export const DEPLOYER_KEY_ENV = "DEPLOYER_PRIVATE_KEY";

const REPO_ROOT = path.resolve(__dirname, "..", "..");

const USAGE = `Usage: paychan deploy --network <name> [--keystore <file>]

Deploys the PaymentChannels singleton with hardhat-deploy (deterministic CREATE2: the same address
on every chain) by running "npx hardhat deploy --network <hardhat name> --tags PaymentChannels",
and prints its address. Running it again is harmless: an existing deployment is reused.
See docs/deploy.md.

Options:
  --network <name>             base-sepolia, optimism-sepolia, base, optimism, arbitrum-sepolia,
                               localhost (a node on 127.0.0.1:8545), or hardhat (a dry run on an
                               in-memory chain: prints the address every chain gets) (required)
  --keystore <file>            encrypted JSON keystore of the deployer (password from
                               ${KEYSTORE_PASSWORD_ENV}, or prompted on a terminal); default: the key
                               in ${DEPLOYER_KEY_ENV}
  -h, --help

Environment: the network's RPC URL variable (BASE_SEPOLIA_RPC_URL, OPTIMISM_SEPOLIA_RPC_URL,
BASE_RPC_URL, OPTIMISM_RPC_URL, ARBITRUM_SEPOLIA_RPC_URL), ${DEPLOYER_KEY_ENV} (a key holding ETH
for gas) unless --keystore is given. Prints {"network", "address", "reused"} as JSON.
`;

/** `paychan deploy`. */
export const command: Command = {
  summary: "deploy the PaymentChannels contract (hardhat-deploy, same address on every chain)",
  usage: USAGE,
  async run(args) {
    const parsed = parseCommandArgs("deploy", USAGE, args, {
      network: { type: "string" },
      keystore: { type: "string" },
    });
    if (typeof parsed === "number") return parsed;
    const { values } = parsed;
    try {
      const network = parseNetwork(values.network, undefined, ["hardhat"]);
      const env: NodeJS.ProcessEnv = { ...process.env, FORCE_COLOR: "0" };
      if (!network.local) {
        // hardhat.config.ts reads the URL from this variable only (no --rpc here).
        rpcUrlOf(network, undefined, process.env, false);
        if (values.keystore !== undefined) {
          env[DEPLOYER_KEY_ENV] = await loadKey({ keystore: values.keystore, role: "the deployer" });
        } else {
          await loadKey({ envVar: DEPLOYER_KEY_ENV, role: "the deployer" });
        }
      }
      const hardhatArgs = ["hardhat", "deploy", "--network", network.hardhatName, "--tags", "PaymentChannels"];
      process.stderr.write(`running npx ${hardhatArgs.join(" ")}\n`);
      const { code, output } = await runHardhat(hardhatArgs, env);
      const deployed = /"?PaymentChannels"? \(tx: (0x[0-9a-fA-F]{64})\)\.\.\.: deployed at (0x[0-9a-fA-F]{40})/.exec(
        output,
      );
      const reused = /reusing "PaymentChannels" at (0x[0-9a-fA-F]{40})/.exec(output);
      const address = deployed?.[2] ?? reused?.[1] ?? /deployed at (0x[0-9a-fA-F]{40})/.exec(output)?.[1];
      if (code !== 0 || !address) {
        const hint = /ECONNREFUSED|127\.0\.0\.1:1\b|could not detect network|HH108/i.test(output)
          ? network.local
            ? "start a node first: npx hardhat node"
            : `check ${network.rpcEnv}: the RPC endpoint did not answer`
          : /insufficient funds/i.test(output)
            ? `fund the deployer with ETH on ${network.name}`
            : "see the hardhat output above";
        throw new CliError(`hardhat deploy failed (exit ${code})`, hint, 1);
      }
      process.stdout.write(
        `${JSON.stringify({ network: network.name, address, reused: Boolean(reused), ...(deployed ? { txHash: deployed[1] } : {}) })}\n`,
      );
      return 0;
    } catch (error) {
      return reportError("deploy", error);
    }
  },
};

/** Runs npx hardhat in the repository, passing its output through to stderr, and collects it. */
function runHardhat(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", args, { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      process.stderr.write(chunk);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}
