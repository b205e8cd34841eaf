import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { createPublicClient, createWalletClient, http as httpTransport, type Address, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { freePort, startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * The package as a seller or a buyer gets it: `npm pack` (which builds dist/ through `prepack`),
 * `npm install --omit=dev <tarball>` into an empty folder, then the examples shipped in the
 * tarball, type-checked against the installed declarations and run against a `hardhat node` on
 * 127.0.0.1: the Express seller (relay and settler in its process) and the reverse-proxy
 * configuration under the installed `paychan server`, each paid by the buyer script.
 *
 * npm works from its local cache (--prefer-offline); the install still compiles better-sqlite3's
 * native module, which is most of its time. The tarball's size and the install time are printed.
 */

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const DEPLOYER_KEY: Hex = HARDHAT_KEYS[0];
const PROXY_PAYEE_KEY: Hex = HARDHAT_KEYS[1];
const SELLER_PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund"];

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a command to completion without blocking the event loop (the hardhat node answers meanwhile). */
function run(
  command: string,
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (status) => resolve({ status, stdout, stderr, ms: Date.now() - started }));
  });
}

/** Fails with the command's output when it did not exit 0. */
function succeeded(result: Run, what: string): Run {
  expect(result.status, `${what} failed:\n${result.stdout}\n${result.stderr}`).to.equal(0);
  return result;
}

/** A long-running child (a seller), with its output kept for failure messages. */
interface Service {
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM, then the exit code (SIGKILL after 15 s). */
  stop(): Promise<number | null>;
}

function startService(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Service {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return {
    child,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Polls `probe` every 200 ms until it returns a value, for up to `ms`. */
async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** The version of a package installed in the repository, so that npm finds it in its cache. */
function repoVersion(name: string): string {
  return (
    JSON.parse(readFileSync(path.join(REPO_ROOT, "node_modules", name, "package.json"), "utf8")) as {
      version: string;
    }
  ).version;
}

/** What `npm pack --json` reports for one tarball. */
interface PackResult {
  readonly filename: string;
  readonly size: number;
  readonly unpackedSize: number;
  readonly files: readonly { readonly path: string }[];
}

describe("the installable package (npm pack, npm install --omit=dev, examples)", function () {
  this.timeout(180_000);

  let tmp: string;
  let project: string;
  let pack: PackResult;
  let install: Run;
  let help: Run;
  let node: HardhatNode;
  const services: Service[] = [];

  before(async function () {
    // Building, packing and compiling better-sqlite3 on a busy 2-core machine take minutes.
    this.timeout(20 * 60_000);
    tmp = mkdtempSync(path.join(os.tmpdir(), "paychan-package-"));
    project = path.join(tmp, "project");
    mkdirSync(project);

    const packed = succeeded(await run("npm", ["pack", "--json", "--pack-destination", tmp], REPO_ROOT), "npm pack");
    // The prepack build prints to stdout before npm's JSON report.
    const report = packed.stdout.slice(packed.stdout.startsWith("[") ? 0 : packed.stdout.lastIndexOf("\n[\n") + 1);
    [pack] = JSON.parse(report) as PackResult[];

    writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "paychan-examples", private: true }));
    const installing = run("npm", ["install", "--omit=dev", ...NPM_FLAGS, path.join(tmp, pack.filename)], project);
    // The node is started while npm installs: neither waits for the other.
    [install, node] = await Promise.all([installing, startHardhatNode({ deploy: true })]);
    succeeded(install, "npm install --omit=dev <tarball>");
    help = await run(path.join(project, "node_modules", ".bin", "paychan"), ["--help"], project);

    // What the examples need besides paychan, as a seller's project would list it.
    const extras = [
      `express@${repoVersion("express")}`,
      `@types/express@${repoVersion("@types/express")}`,
      `@types/node@${repoVersion("@types/node")}`,
    ];
    succeeded(await run("npm", ["install", "--omit=dev", ...NPM_FLAGS, ...extras], project), "npm install express");
    cpSync(path.join(project, "node_modules", "paychan", "examples"), project, { recursive: true });
  });

  after(async function () {
    // Removing the installed tree (hundreds of packages) takes well over a minute on a busy disk.
    this.timeout(300_000);
    for (const service of services) await service.stop();
    await node?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("packs the build, the bin, the examples, the docs and the config schema, and nothing else", () => {
    const files = pack.files.map((f) => f.path);
    console.log(
      `      ${pack.filename}: ${(pack.size / 1000).toFixed(1)} kB packed, ` +
        `${(pack.unpackedSize / 1000).toFixed(1)} kB unpacked, ${files.length} files`,
    );
    for (const file of files) {
      expect(file).to.match(
        /^(dist\/|docs\/|examples\/|bin\/paychan\.js$|package\.json$|README\.md$|paychan\.config\.schema\.json$)/,
      );
    }
    expect(files).to.include("paychan.config.schema.json");
    for (const entry of ["server", "client", "protocol", "settler"]) {
      expect(files).to.include.members([
        `dist/${entry}/index.js`,
        `dist/${entry}/index.d.ts`,
        `dist/esm/${entry}.mjs`,
        `dist/esm/${entry}.d.mts`,
      ]);
    }
    expect(files).to.include.members([
      "dist/cli/index.js",
      "dist/browser/paywall.js",
      "examples/seller-express.cjs",
      "examples/buyer.mjs",
      "examples/paychan.config.json",
    ]);
  });

  it("installs with --omit=dev and runs `paychan --help` from the installed bin, without TypeScript", () => {
    console.log(`      npm install --omit=dev ${pack.filename}: ${(install.ms / 1000).toFixed(1)} s`);
    expect(help.status, help.stderr).to.equal(0);
    expect(help.stdout).to.match(/^Usage: paychan <command>/);
    expect(help.stdout).to.include("settle");
    expect(() => require.resolve("typescript", { paths: [project] })).to.throw(/Cannot find module/);
    expect(() => require.resolve("hardhat", { paths: [project] })).to.throw(/Cannot find module/);
  });

  it("loads every entry point with require and with import, both giving the same objects", async () => {
    const manifest = JSON.parse(
      readFileSync(path.join(project, "node_modules", "paychan", "package.json"), "utf8"),
    ) as {
      exports: Record<string, unknown>;
    };
    const subpaths = Object.keys(manifest.exports)
      .filter((key) => key !== "./package.json")
      .map((key) => `paychan${key.slice(1)}`);
    expect(subpaths).to.have.members([
      "paychan",
      "paychan/server",
      "paychan/client",
      "paychan/protocol",
      "paychan/settler",
      "paychan/x402",
      "paychan/mcp",
    ]);
    const script = `
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const result = {};
      for (const name of ${JSON.stringify(subpaths)}) {
        const cjs = require(name);
        const esm = await import(name);
        const names = Object.keys(cjs).sort();
        result[name] = {
          names,
          same: names.length > 0 && names.every((n) => esm[n] === cjs[n]) &&
            JSON.stringify(Object.keys(esm).sort()) === JSON.stringify(names),
        };
      }
      process.stdout.write(JSON.stringify(result));`;
    // In a folder of its own, out of the examples' type check.
    mkdirSync(path.join(project, "checks"));
    writeFileSync(path.join(project, "checks", "entries.mjs"), script);
    const result = succeeded(await run(process.execPath, ["checks/entries.mjs"], project), "loading the entry points");
    const entries = JSON.parse(result.stdout) as Record<string, { names: string[]; same: boolean }>;
    for (const [name, { same }] of Object.entries(entries)) expect(same, name).to.equal(true);
    expect(entries["paychan/server"].names).to.include.members([
      "createPaymentServer",
      "paywall",
      "paymentOf",
      "loadConfig",
    ]);
    expect(entries["paychan/server"].names).to.include.members(["createProxy", "GaslessRelay"]);
    expect(entries["paychan/client"].names).to.include.members(["createPayingFetch", "openChannel", "topUp"]);
    expect(entries["paychan/settler"].names).to.include.members(["startSettler", "Settler"]);
    expect(entries["paychan/protocol"].names).to.include.members(["verifyReceipt", "REASONS", "voucherTypedData"]);
    // Loads without @x402/core installed: the plug-in uses its types only.
    expect(entries["paychan/x402"].names).to.include.members(["createChannelScheme", "findDefaultAssetIn"]);
    // Loads without @modelcontextprotocol/sdk installed: paid tools use its types only.
    expect(entries["paychan/mcp"].names).to.include.members(["paidTool", "createPayingMcpClient"]);
  });

  it("type-checks the examples against the installed declarations", async () => {
    const tsc = path.join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
    // As shipped: ES modules and CommonJS under Node's resolution (the exports map), strict, and
    // with the package's own declaration files checked too (skipLibCheck false).
    succeeded(await run(process.execPath, [tsc, "-p", "tsconfig.json"], project), "tsc (nodenext)");
    // A CommonJS project on the older resolution, which ignores exports: typesVersions must map
    // paychan/server and paychan/settler (the declarations themselves were checked just above).
    writeFileSync(
      path.join(project, "tsconfig.node10.json"),
      JSON.stringify({
        extends: "./tsconfig.json",
        compilerOptions: { module: "commonjs", moduleResolution: "node10", esModuleInterop: true, skipLibCheck: true },
        include: ["*.cjs"],
      }),
    );
    succeeded(await run(process.execPath, [tsc, "-p", "tsconfig.node10.json"], project), "tsc (node10)");
  });

  describe("the examples, run against a hardhat node", () => {
    let contracts: { MockUSDC: Address; PaymentChannels: Address };
    const chain = () => ({ ...hardhat, rpcUrls: { default: { http: [node.url] } } });
    const publicClient = () => createPublicClient({ chain: chain(), transport: httpTransport(node.url) });

    before(() => {
      if (!node.deployments) throw new Error("the hardhat node deployed nothing");
      contracts = node.deployments;
    });

    /** The example configuration with the chain-specific values of the local node. */
    function localConfig(file: string, fields: { listen: number; database: string; upstream?: string }): string {
      const example = JSON.parse(readFileSync(path.join(project, "paychan.config.json"), "utf8")) as {
        settler: Record<string, unknown>;
      };
      const config = {
        ...example,
        // The example is written for Base Sepolia; these fields name the local chain instead.
        network: "localhost",
        rpcUrl: node.url,
        contract: contracts.PaymentChannels,
        token: { address: contracts.MockUSDC, decimals: 6, name: "USD Coin", version: "2" },
        listen: { host: "127.0.0.1", port: fields.listen },
        database: { path: fields.database },
        pollIntervalMs: 200,
        ...(fields.upstream ? { upstream: fields.upstream } : {}),
        // Claim whatever is owed, every second, so that the claim shows within the test.
        settler: { ...example.settler, minUnclaimed: "$0.001", intervalSec: 1 },
      };
      writeFileSync(path.join(project, file), JSON.stringify(config, null, 2));
      return file;
    }

    /** A fresh buyer wallet holding $20 of the mock USDC and no ETH. */
    async function fundedBuyer(): Promise<Hex> {
      const key = generatePrivateKey();
      const wallet = createWalletClient({
        account: privateKeyToAccount(DEPLOYER_KEY),
        chain: chain(),
        transport: httpTransport(node.url),
      });
      const hash = await wallet.writeContract({
        address: contracts.MockUSDC,
        abi: usdcAbi,
        functionName: "mint",
        args: [privateKeyToAccount(key).address, 20_000_000n],
      });
      await publicClient().waitForTransactionReceipt({ hash, pollingInterval: 50 });
      return key;
    }

    const balanceOf = (account: Address) =>
      publicClient().readContract({
        address: contracts.MockUSDC,
        abi: usdcAbi,
        functionName: "balanceOf",
        args: [account],
      });

    /** Runs the buyer script in a folder of its own (its .paychan state) and returns its JSON lines. */
    async function runBuyer(name: string, url: string, count: number): Promise<Record<string, unknown>[]> {
      const dir = path.join(project, name);
      mkdirSync(dir);
      const env = { ...process.env, PAYCHAN_PAYER_PRIVATE_KEY: await fundedBuyer() };
      const result = succeeded(await run(process.execPath, ["../buyer.mjs", url, String(count)], dir, env), name);
      return result.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    }

    /** Waits until `url` answers 402 (the seller is up and prices it). */
    async function waitForSeller(url: string, service: Service): Promise<void> {
      await waitFor(`${url} to answer 402\n${service.output()}`, 60_000, async () => {
        if (service.child.exitCode !== null) throw new Error(`the seller exited:\n${service.output()}`);
        const response = await fetch(url);
        await response.arrayBuffer();
        return response.status === 402 ? true : undefined;
      }).catch((error: unknown) => {
        if (service.child.exitCode !== null) throw new Error(`the seller exited:\n${service.output()}`);
        throw error;
      });
    }

    function sellerEnv(payeeKey: Hex, config: string): NodeJS.ProcessEnv {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        PAYCHAN_CONFIG: config,
        PAYCHAN_PAYEE_PRIVATE_KEY: payeeKey,
        PAYCHAN_RELAYER_PRIVATE_KEY: RELAYER_KEY,
      };
      delete env.PAYCHAN_SETTLER_PRIVATE_KEY;
      return env;
    }

    it("the Express seller, with the relay and its in-process settler, is paid by the buyer script", async () => {
      const port = await freePort();
      const config = localConfig("seller.config.json", { listen: port, database: "seller.db" });
      const payee = privateKeyToAccount(SELLER_PAYEE_KEY).address;
      const before = await balanceOf(payee);
      const seller = startService(
        process.execPath,
        ["seller-express.cjs"],
        project,
        sellerEnv(SELLER_PAYEE_KEY, config),
      );
      services.push(seller);
      const url = `http://127.0.0.1:${port}/weather`;
      await waitForSeller(url, seller);

      const lines = await runBuyer("buyer-express", url, 3);
      expect(lines.map((l) => [l.status, l.charge, l.chargedTotal, l.receiptValid])).to.deep.equal([
        [200, "1000", "1000", true],
        [200, "1000", "2000", true],
        [200, "1000", "3000", true],
      ]);
      expect(JSON.parse(lines[0].body as string)).to.deep.equal({ city: "Lisbon", temperatureC: 21 });
      // The settler in the seller's process claims what the buyer paid: the payee receives it.
      await waitFor(`the claim\n${seller.output()}`, 30_000, async () =>
        (await balanceOf(payee)) - before === 3_000n ? true : undefined,
      );
      expect(await seller.stop(), seller.output()).to.equal(0);
    });

    it("the reverse-proxy configuration, under the installed `paychan server`, is paid by the buyer script", async () => {
      const upstream = http.createServer((req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ upstream: true, path: req.url }));
      });
      await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
      try {
        const port = await freePort();
        const config = localConfig("proxy.config.json", {
          listen: port,
          database: "proxy.db",
          upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
        });
        const payee = privateKeyToAccount(PROXY_PAYEE_KEY).address;
        const before = await balanceOf(payee);
        const bin = path.join(project, "node_modules", ".bin", "paychan");
        const proxy = startService(bin, ["server", "--config", config], project, sellerEnv(PROXY_PAYEE_KEY, config));
        services.push(proxy);
        const url = `http://127.0.0.1:${port}/weather?city=Porto`;
        await waitForSeller(url, proxy);

        // A browser gets the paywall page, whose script the installed package serves from its dist/.
        const page = await fetch(url, { headers: { accept: "text/html" } });
        expect(page.status).to.equal(402);
        const integrity = /<script nonce="[^"]+" src="\/\.paychan\/paywall\.js" integrity="([^"]+)"/.exec(
          await page.text(),
        )?.[1];
        const script = Buffer.from(await (await fetch(`http://127.0.0.1:${port}/.paychan/paywall.js`)).arrayBuffer());
        expect(integrity).to.equal(`sha384-${createHash("sha384").update(script).digest("base64")}`);
        expect(script.length).to.be.greaterThan(10_000);

        const lines = await runBuyer("buyer-proxy", url, 2);
        expect(lines.map((l) => [l.status, l.charge, l.receiptValid])).to.deep.equal([
          [200, "1000", true],
          [200, "1000", true],
        ]);
        expect(JSON.parse(lines[1].body as string)).to.deep.equal({ upstream: true, path: "/weather?city=Porto" });
        // `paychan server` runs the batch settler beside the proxy by default.
        await waitFor(`the claim\n${proxy.output()}`, 30_000, async () =>
          (await balanceOf(payee)) - before === 2_000n ? true : undefined,
        );
        expect(await proxy.stop(), proxy.output()).to.equal(0);
      } finally {
        await new Promise<void>((resolve) => upstream.close(() => resolve()));
      }
    });
  });
});
