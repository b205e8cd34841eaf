import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { config } from "hardhat";
import { JsonRpcProvider, Wallet, getCreate2Address, keccak256, type JsonRpcSigner } from "ethers";
import type { Address } from "viem";
import { voucherDomain, VOUCHER_TYPES } from "../../src/protocol/voucher";
import { MockUSDC__factory, PaymentChannels__factory } from "../../typechain-types";

/*
 * The local developer flow, end to end: `npx hardhat node` runs the hardhat-deploy scripts on
 * start-up and writes deployments/localhost/ (hardhat-deploy names the folder "localhost" whatever
 * port the node listens on). The test starts a node on a free port, reads the addresses from those
 * files, checks them against the CREATE2 addresses computed offline, and opens and claims a
 * channel over JSON-RPC. A developer's existing deployments/localhost/ is restored afterwards, and
 * the node's whole process group is always killed.
 */

/** Arachnid's deterministic-deployment proxy, the default factory of hardhat-deploy. */
const CREATE2_FACTORY = "0x4e59b44847b379578588920cA78FbF26c0B4956C";
/** The salt hardhat-deploy uses for `deterministicDeployment: true`. */
const DEFAULT_SALT = "0x" + "00".repeat(32);
const READY_TIMEOUT_MS = 50_000;

const deploymentsDir = path.join(config.paths.root, "deployments");
const localhostDir = path.join(deploymentsDir, "localhost");

interface DeploymentFile {
  address: string;
  transactionHash?: string;
  bytecode?: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function chainIdOf(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
      signal: AbortSignal.timeout(1_000),
    });
    return ((await response.json()) as { result?: string }).result;
  } catch {
    return undefined;
  }
}

/** Whether a process of the group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The artifact the node deployed from. Read from <root>/artifacts rather than through `hre.artifacts`,
 * which `hardhat coverage` points at its instrumented build; the node compiles the normal build
 * before it deploys, so these files are current once it answers.
 */
function readArtifact(file: string, name: string): { bytecode: string; deployedBytecode: string } {
  const json = path.join(config.paths.root, "artifacts", "contracts", file, `${name}.json`);
  return JSON.parse(fs.readFileSync(json, "utf8")) as { bytecode: string; deployedBytecode: string };
}

function readDeployment(name: string): DeploymentFile {
  return JSON.parse(fs.readFileSync(path.join(localhostDir, `${name}.json`), "utf8")) as DeploymentFile;
}

describe("deploy: npx hardhat node on a free port", function () {
  this.timeout(120_000);

  let child: ChildProcess | undefined;
  let output = "";
  let url = "";
  let provider: JsonRpcProvider | undefined;
  let backup: string | undefined;
  let deploymentsExisted = false;
  const killGroup = () => {
    if (child?.pid !== undefined && groupAlive(child.pid)) process.kill(-child.pid, "SIGKILL");
  };

  before(async () => {
    // Keep a developer's own deployments/localhost (the node task deletes and rewrites it).
    deploymentsExisted = fs.existsSync(deploymentsDir);
    if (fs.existsSync(localhostDir)) {
      backup = fs.mkdtempSync(path.join(os.tmpdir(), "paychan-deployments-"));
      fs.cpSync(localhostDir, backup, { recursive: true });
    }

    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    // Its own process group (npx → node): killing the group leaves no orphaned node behind.
    child = spawn("npx", ["hardhat", "node", "--hostname", "127.0.0.1", "--port", String(port)], {
      cwd: config.paths.root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0" },
    });
    process.on("exit", killGroup);
    const append = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
    child.stdout?.on("data", append);
    child.stderr?.on("data", append);
    let exited = false;
    child.on("exit", () => (exited = true));

    const deadline = Date.now() + READY_TIMEOUT_MS;
    while ((await chainIdOf(url)) === undefined) {
      if (exited || Date.now() > deadline) throw new Error(`hardhat node did not answer on ${url}:\n${output}`);
      await sleep(100);
    }
    provider = new JsonRpcProvider(url, 31337, { staticNetwork: true, pollingInterval: 50 });
  });

  after(async () => {
    provider?.destroy();
    if (child?.pid !== undefined) {
      const pgid = child.pid;
      if (groupAlive(pgid)) process.kill(-pgid, "SIGTERM");
      for (let waited = 0; groupAlive(pgid) && waited < 5_000; waited += 50) await sleep(50);
      killGroup();
      for (let waited = 0; groupAlive(pgid) && waited < 5_000; waited += 50) await sleep(50);
      child.stdout?.destroy();
      child.stderr?.destroy();
      process.off("exit", killGroup);
      expect(groupAlive(pgid), "the node's process group is gone").to.equal(false);
    }
    fs.rmSync(localhostDir, { recursive: true, force: true });
    if (backup) {
      fs.cpSync(backup, localhostDir, { recursive: true });
      fs.rmSync(backup, { recursive: true, force: true });
    } else if (!deploymentsExisted && fs.existsSync(deploymentsDir) && fs.readdirSync(deploymentsDir).length === 0) {
      fs.rmdirSync(deploymentsDir);
    }
  });

  it("answers eth_chainId 31337 and wrote deployments/localhost for it", async () => {
    expect(await chainIdOf(url)).to.equal("0x7a69");
    expect(fs.readFileSync(path.join(localhostDir, ".chainId"), "utf8").trim()).to.equal("31337");
  });

  for (const [file, name] of [
    ["PaymentChannels.sol", "PaymentChannels"],
    ["mocks/MockUSDC.sol", "MockUSDC"],
    ["mocks/MockEURC.sol", "MockEURC"],
  ]) {
    it(`deployed ${name} through the CREATE2 factory at its offline-computed address`, async () => {
      const deployment = readDeployment(name);
      const artifact = readArtifact(file, name);
      // Same creation code as this checkout's build, so the address below is the one every chain gets.
      expect(deployment.bytecode, "creation code recorded by hardhat-deploy").to.equal(artifact.bytecode);
      const expected = getCreate2Address(CREATE2_FACTORY, DEFAULT_SALT, keccak256(artifact.bytecode));
      expect(deployment.address).to.equal(expected);

      const code = await provider!.getCode(expected);
      expect(code.length, `code at ${expected}`).to.equal(artifact.deployedBytecode.length);
      expect(await provider!.getCode(CREATE2_FACTORY)).to.not.equal("0x");

      // The deployment really went through the factory with the all-zero salt: data = salt ‖ creation code.
      const tx = await provider!.getTransaction(deployment.transactionHash!);
      expect(tx?.to).to.equal(CREATE2_FACTORY);
      expect(tx?.data).to.equal(DEFAULT_SALT + artifact.bytecode.slice(2));
    });
  }

  it("opens and claims a channel over JSON-RPC", async () => {
    const channelsAddress = readDeployment("PaymentChannels").address;
    const usdcAddress = readDeployment("MockUSDC").address;
    const payer: JsonRpcSigner = await provider!.getSigner(1);
    const payee: JsonRpcSigner = await provider!.getSigner(2);
    const channels = PaymentChannels__factory.connect(channelsAddress, payer);
    const usdc = MockUSDC__factory.connect(usdcAddress, payer);
    const session = new Wallet(keccak256(Buffer.from("paychan localhost test session")));
    const deposit = 5_000_000n;
    const amount = 1_250_000n;

    await (await usdc.mint(payer.address, deposit)).wait();
    await (await usdc.approve(channelsAddress, deposit)).wait();
    const channelId = await channels.nextChannelId(session.address);
    await (await channels.open(payee.address, usdcAddress, session.address, 3600, deposit)).wait();

    const domain = voucherDomain(31337, channelsAddress as Address);
    const signature = await session.signTypedData(
      domain,
      { Voucher: [...VOUCHER_TYPES.Voucher] },
      { channelId, cumulativeAmount: amount },
    );
    const before = await usdc.balanceOf(payee.address);
    await (await channels.connect(payee).claim(channelId, amount, signature)).wait();

    expect(await usdc.balanceOf(payee.address)).to.equal(before + amount);
    const channel = await channels.getChannel(channelId);
    expect([channel.status, channel.deposit, channel.claimed]).to.deep.equal([1n, deposit, amount]);
  });
});
