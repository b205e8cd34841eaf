import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { NETWORKS, networkByHardhatName, type NetworkName } from "../../src/chain/networks";
import { CLI_NETWORKS } from "../../src/cli/common";

/**
 * The deployment docs name every network in two spellings: the CLI's (`base-sepolia`) and
 * Hardhat's (`baseSepolia`). A command copied from them must use the spelling its tool accepts.
 */

const ROOT = path.resolve(__dirname, "..", "..");
const DOCS = ["docs/deploy.md", "README.md", "docs/client.md"];

/** Every `--network <name>` of a `paychan` or `npx hardhat` command line in a document, with its tool. */
function networkFlags(markdown: string): { tool: "paychan" | "hardhat"; name: string; line: string }[] {
  const found: { tool: "paychan" | "hardhat"; name: string; line: string }[] = [];
  for (const line of markdown.split("\n")) {
    // A line can hold several commands (a table cell, a sentence): split at each command start.
    for (const command of line.split(/(?=\bpaychan\s|\bnpx hardhat\s)/)) {
      const tool = /^npx hardhat\s/.test(command) ? "hardhat" : /^paychan\s/.test(command) ? "paychan" : undefined;
      const flag = /--network\s+([A-Za-z][\w-]*)/.exec(command);
      if (tool && flag) found.push({ tool, name: flag[1], line: line.trim() });
    }
  }
  return found;
}

describe("deployment docs: network names", () => {
  it("every paychan command uses a CLI network name, every npx hardhat command a Hardhat one", () => {
    const cliNames = new Set<string>([...CLI_NETWORKS, "hardhat"]);
    let checked = 0;
    for (const doc of DOCS) {
      for (const { tool, name, line } of networkFlags(readFileSync(path.join(ROOT, doc), "utf8"))) {
        checked++;
        if (tool === "paychan") expect(cliNames.has(name), `${doc}: ${line}`).to.equal(true);
        else expect(networkByHardhatName(name), `${doc}: ${line}`).not.to.equal(undefined);
      }
    }
    expect(checked).to.be.greaterThan(5);
  });

  it("the network table of docs/deploy.md gives both spellings, the chain id, RPC variable and USDC of networks.ts", () => {
    const lines = readFileSync(path.join(ROOT, "docs/deploy.md"), "utf8").split("\n");
    const header = lines.findIndex((line) => line.startsWith("| Network"));
    const columns = lines[header].split("|").map((cell) => cell.trim());
    expect(columns.slice(1, 7)).to.deep.equal([
      "Network",
      "`paychan --network`",
      "`npx hardhat --network`",
      "Chain id",
      "RPC URL variable",
      "USDC (from `networks.ts`)",
    ]);
    const rows = lines.slice(header + 2).filter((line) => line.startsWith("|"));
    const remote = Object.values(NETWORKS).filter((n) => !n.local);
    expect(rows).to.have.length(remote.length);
    for (const row of rows) {
      const [, cliName, hardhatName, chainId, rpcEnv, usdc] = row
        .split("|")
        .slice(1, 7)
        .map((cell) => cell.trim().replace(/`/g, ""));
      const network = NETWORKS[cliName as NetworkName];
      expect(network, row).not.to.equal(undefined);
      expect(CLI_NETWORKS, row).to.include(cliName);
      expect({ hardhatName, chainId: Number(chainId), rpcEnv, usdc }, row).to.deep.equal({
        hardhatName: network.hardhatName,
        chainId: network.chainId,
        rpcEnv: network.rpcEnv,
        usdc: network.usdc,
      });
    }
  });
});
