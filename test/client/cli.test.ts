import { expect } from "chai";
import { encryptKeystoreJsonSync } from "ethers";
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import {
  ChannelOperationError,
  createPayingFetch,
  getChannelStatus,
  openChannel,
  PaymentLimitError,
  termsFromOffer,
  type ChannelTerms,
  type TopUpEvent,
} from "../../src/client";
import type { PaymentServer } from "../../src/server/app";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { runPaychan as cli, type CliResult } from "../helpers/cli";
import { startLocalServer, type LocalServer } from "../helpers/localServer";

/**
 * The channel-management CLI (`paychan topup`, `withdraw`, `deploy`) driven as separate processes
 * with their environment, against a real `hardhat node` and the real payment server (with its
 * gasless relay); and the paying fetch's automatic top-up end to end.
 */

// Roles on the local chain (Hardhat development accounts).
const MINTER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const RELAYER_KEY: Hex = HARDHAT_KEYS[3];
/** Hardhat account #5: has ETH, so it can send the payer's own transactions (permit, withdraw). */
const PAYER_KEY: Hex = HARDHAT_KEYS[5];
const REPO_ROOT = path.resolve(__dirname, "..", "..");
const DOLLAR = 1_000_000n;

/**
 * Runs `paychan <args>` on a pseudo-terminal (util-linux `script`), typing `input` once the
 * command prompts for it. Undefined where `script` is not available.
 */
function cliOnTty(args: string[], env: NodeJS.ProcessEnv, input: string): Promise<CliResult> | undefined {
  if (process.platform !== "linux" || !existsSync("/usr/bin/script")) return undefined;
  const command = [process.execPath, path.join(REPO_ROOT, "bin", "paychan.js"), ...args]
    .map((a) => `'${a.replace(/'/g, "'\\''")}'`)
    .join(" ");
  const base: NodeJS.ProcessEnv = { ...process.env };
  delete base.PAYCHAN_PAYER_PRIVATE_KEY;
  delete base.PAYCHAN_KEYSTORE_PASSWORD;
  return new Promise((resolve) => {
    const child = spawn("/usr/bin/script", ["-qec", command, "/dev/null"], { env: { ...base, ...env } });
    let stdout = "";
    let typed = false;
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      if (!typed && /password for/.test(stdout)) {
        typed = true;
        child.stdin.write(input);
      }
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr: "" });
    });
  });
}

describe("CLI: topup, withdraw, deploy as processes; automatic top-up (hardhat node, real server)", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let localServer: LocalServer;
  let server: PaymentServer;
  let dir: string;
  let baseUrl: string;
  let usdc: Address;
  let contract: Address;
  let terms: ChannelTerms;
  const payer = privateKeyToAccount(PAYER_KEY);
  const minter = privateKeyToAccount(MINTER_KEY);

  const mint = async (to: Address, amount: bigint) => {
    const wallet = createWalletClient({ account: minter, chain: hardhat, transport: httpTransport(node.url) });
    const hash = await wallet.writeContract({ address: usdc, abi: usdcAbi, functionName: "mint", args: [to, amount] });
    await publicClient.waitForTransactionReceipt({ hash });
  };
  const balance = (owner: Address) =>
    publicClient.readContract({ address: usdc, abi: usdcAbi, functionName: "balanceOf", args: [owner] });
  const onChain = async (channelId: bigint) => (await getChannelStatus({ publicClient, contract, channelId }))!;
  /** Opens a channel gaslessly for `funder` (library), signed by a fresh session key. */
  const openFor = async (funder: ReturnType<typeof privateKeyToAccount>, amount: bigint) => {
    const session = privateKeyToAccount(generatePrivateKey());
    const opened = await openChannel({
      terms,
      funding: { kind: "relay", payer: funder },
      signer: session.address,
      amount,
      withdrawDelay: 3600,
    });
    return { session, channelId: opened.channelId, id: `0x${opened.channelId.toString(16)}` };
  };
  const local = () => ["--network", "localhost", "--rpc", node.url, "--contract", contract];

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    localServer = await startLocalServer(
      { rpcUrl: node.url, contract, token: usdc },
      { payee: PAYEE_KEY, relayer: RELAYER_KEY },
      { routes: { "GET /paid": "$0.001", "GET /big": "$0.25" } },
      "/paid",
    );
    ({ server, baseUrl, dir } = localServer);
    terms = termsFromOffer(localServer.offer, `${baseUrl}/paid`);
    await mint(payer.address, 100n * DOLLAR);
  });

  after(async () => {
    await localServer?.stop();
    await node?.stop();
  });

  it("refuses a private key on the command line (flag or bare hex), pointing at the env var and --keystore", async () => {
    for (const args of [
      ["topup", "--channel", "0x1", "--amount", "5", "--private-key", PAYER_KEY],
      ["withdraw", "--channel", "0x1", `--key=${PAYER_KEY}`],
      ["open", `${baseUrl}/paid`, "--deposit", "$1", PAYER_KEY],
      ["deploy", "--network", "base-sepolia", "--pk", PAYER_KEY],
    ]) {
      const result = await cli(args, { PAYCHAN_PAYER_PRIVATE_KEY: PAYER_KEY });
      expect(result.code, args.join(" ")).to.equal(2);
      expect(result.stderr).to.match(/refusing (--private-key|--key|--pk|a private key) on the command line/);
      expect(result.stderr).to.include("fix: set PAYCHAN_PAYER_PRIVATE_KEY in the environment, or pass --keystore");
      expect(result.stderr).not.to.include(PAYER_KEY.slice(2));
      expect(result.stdout).to.equal("");
    }
  });

  it("answers an unknown flag or a stray argument with the usage (exit 2), and --help with the usage (exit 0)", async () => {
    for (const command of ["open", "pay", "status", "topup", "withdraw", "deploy"]) {
      const unknown = await cli([command, "--no-such-flag"]);
      expect(unknown.code, `${command} --no-such-flag`).to.equal(2);
      expect(unknown.stderr).to.match(new RegExp(`^paychan ${command}: Unknown option '--no-such-flag'`));
      expect(unknown.stderr).to.include("Usage:");
      const help = await cli([command, "--help"]);
      expect(help.code, `${command} --help`).to.equal(0);
      expect(help.stdout).to.include("Usage:");
      expect(help.stderr).to.equal("");
    }
    const stray = await cli(["status", "extra"]);
    expect(stray.code).to.equal(2);
    expect(stray.stderr).to.include("paychan status: Unexpected argument 'extra'");
  });

  it("names the missing environment variable and how to set it", async () => {
    const noRpc = await cli(["withdraw", "--channel", "0x1", "--network", "base-sepolia"], {
      PAYCHAN_PAYER_PRIVATE_KEY: PAYER_KEY,
    });
    expect(noRpc.code).to.equal(2);
    expect(noRpc.stderr).to.include("no RPC URL for base-sepolia: BASE_SEPOLIA_RPC_URL is not set");
    expect(noRpc.stderr).to.include("fix: export BASE_SEPOLIA_RPC_URL=https://");
    const noKey = await cli(["topup", "--channel", "0x1", "--amount", "5", ...local()]);
    expect(noKey.code).to.equal(2);
    expect(noKey.stderr).to.include("PAYCHAN_PAYER_PRIVATE_KEY is not set and no --keystore was given");
    expect(noKey.stderr).to.include("fix: export PAYCHAN_PAYER_PRIVATE_KEY=0x");
    const deploy = await cli(["deploy", "--network", "optimism-sepolia"]);
    expect(deploy.code).to.equal(2);
    expect(deploy.stderr).to.include("OPTIMISM_SEPOLIA_RPC_URL is not set");
    const noKeyDeploy = await cli(["deploy", "--network", "base-sepolia"], {
      BASE_SEPOLIA_RPC_URL: "http://127.0.0.1:1",
    });
    expect(noKeyDeploy.stderr).to.include("DEPLOYER_PRIVATE_KEY is not set");
    const badNetwork = await cli(["topup", "--channel", "0x1", "--amount", "1", "--network", "mainnet"]);
    expect(badNetwork.code).to.equal(2);
    expect(badNetwork.stderr).to.match(/unknown network "mainnet"\n {2}fix: use --network with one of: base-sepolia, /);
  });

  it("paychan topup: with a permit from the payer's key, and gaslessly through the server's relay", async () => {
    const { channelId, id } = await openFor(payer, DOLLAR);
    const env = { PAYCHAN_PAYER_PRIVATE_KEY: PAYER_KEY };
    const permit = await cli(["topup", "--channel", id, "--amount", "5", ...local()], env);
    expect(permit.code, permit.stderr).to.equal(0);
    expect(JSON.parse(permit.stdout)).to.deep.include({ channelId: id, added: "5000000", deposit: "6000000" });
    expect(permit.stderr).to.match(
      /topping up channel 0x[0-9a-f]+ by 5 \(permit, localhost\) \.\.\.\n.*: done in \d+\.\ds/,
    );
    const relayed = await cli(
      [
        "topup",
        "--channel",
        id,
        "--amount",
        "$1.5",
        "--url",
        `${baseUrl}/paid`,
        "--network",
        "localhost",
        "--rpc",
        node.url,
      ],
      env,
    );
    expect(relayed.code, relayed.stderr).to.equal(0);
    expect(JSON.parse(relayed.stdout)).to.deep.include({ added: "1500000", deposit: "7500000" });
    expect(relayed.stderr).to.include("(relay, localhost)");
    expect((await onChain(channelId)).deposit).to.equal(7_500_000n);
    const bad = await cli(["topup", "--channel", id, "--amount", "five", ...local()], env);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('--amount "five" is not an amount');
  });

  it("pays and tops up automatically (gasless) when the channel runs low: one top-up at a time, within maxTopUpTotal", async () => {
    const funder = privateKeyToAccount(generatePrivateKey()); // USDC only, no ETH
    await mint(funder.address, 10n * DOLLAR);
    const { session, channelId } = await openFor(funder, DOLLAR);
    const events: TopUpEvent[] = [];
    let relayCalls = 0;
    let relayConcurrent = 0;
    let relayMaxConcurrent = 0;
    const countingFetch: typeof fetch = async (input, init) => {
      relayCalls++;
      relayMaxConcurrent = Math.max(relayMaxConcurrent, ++relayConcurrent);
      try {
        return await fetch(input, init);
      } finally {
        relayConcurrent--;
      }
    };
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: DOLLAR,
      maxTotal: 10n * DOLLAR,
      autoTopUp: {
        below: 300_000n,
        amount: DOLLAR,
        funding: { kind: "relay", payer: funder, fetch: countingFetch },
        onTopUp: (event) => events.push(event),
      },
      maxTopUpTotal: DOLLAR,
    });
    // $1 deposit at $0.25 a request: after the third, $0.25 is left (< $0.30) → one top-up.
    for (let i = 0; i < 3; i++) {
      const r = await pay(`${baseUrl}/big?i=${i}`);
      expect(r.status).to.equal(200);
      expect(r.payment?.topUp === undefined).to.equal(i < 2);
    }
    expect(events).to.have.length(1);
    expect(events[0]).to.deep.include({ channelId, amount: DOLLAR, deposit: 2n * DOLLAR, reason: "below" });
    expect((await onChain(channelId)).deposit).to.equal(2n * DOLLAR);
    expect(pay.toppedUp).to.equal(DOLLAR);
    // Four more in a burst ($0.25 left, below the threshold): the budget allows no second top-up.
    const burst = await Promise.all(Array.from({ length: 4 }, (_, i) => pay(`${baseUrl}/big?burst=${i}`)));
    expect(burst.map((r) => r.status)).to.deep.equal([200, 200, 200, 200]);
    expect(burst.every((r) => r.payment?.topUp === undefined && r.payment?.topUpError === undefined)).to.equal(true);
    expect(pay.spent).to.equal(1_750_000n);
    // The last $0.25 is reachable exactly (a voucher refused while the server had not yet seen the
    // top-up is resent unchanged, so amounts never climb past the new deposit).
    expect((await pay(`${baseUrl}/big?last=1`)).payment?.amount).to.equal(2n * DOLLAR);
    // Now the deposit is exhausted: amount_exceeds_deposit → a top-up is needed, and refused by the budget.
    let refused: unknown;
    await pay(`${baseUrl}/big?over=1`).catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(PaymentLimitError);
    expect((refused as PaymentLimitError).limit).to.equal("maxTopUpTotal");
    expect(pay.spent).to.equal(2n * DOLLAR);
    expect(events).to.have.length(1);
    expect(relayCalls).to.equal(1);
    expect(relayMaxConcurrent).to.equal(1);
    expect(await publicClient.getBalance({ address: funder.address })).to.equal(0n);
    expect(server.store.getLedger(channelId)?.chargedTotal).to.equal(2n * DOLLAR);
  });

  it("tops up once for a concurrent burst refused with amount_exceeds_deposit, then serves every request", async () => {
    const funder = privateKeyToAccount(generatePrivateKey());
    await mint(funder.address, 10n * DOLLAR);
    const { session, channelId } = await openFor(funder, DOLLAR);
    const events: TopUpEvent[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: DOLLAR,
      maxTotal: 10n * DOLLAR,
      autoTopUp: {
        below: 0n, // only the refusal triggers it
        amount: 2n * DOLLAR,
        funding: {
          kind: "relay",
          payer: funder,
          fetch: async (input, init) => {
            maxConcurrent = Math.max(maxConcurrent, ++concurrent);
            try {
              return await fetch(input, init);
            } finally {
              concurrent--;
            }
          },
        },
        onTopUp: (event) => events.push(event),
      },
      maxTopUpTotal: 10n * DOLLAR,
    });
    await pay(`${baseUrl}/big?warm=1`); // learns the price
    // 8 at once need $2 on a $1 deposit ($0.25 already spent): some are refused and wait for one shared top-up.
    const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => pay(`${baseUrl}/big?b=${i}`)));
    expect(burst.map((r) => r.status)).to.deep.equal(new Array(8).fill(200));
    expect(events.map((e) => e.reason)).to.deep.equal(["amount_exceeds_deposit"]);
    expect(maxConcurrent).to.equal(1);
    expect((await onChain(channelId)).deposit).to.equal(3n * DOLLAR);
    expect(pay.spent).to.equal(9n * 250_000n);
    expect(server.store.getLedger(channelId)?.chargedTotal).to.equal(9n * 250_000n);
  });

  it("a failed threshold top-up does not fail the paid request: reported in payment.topUpError, budget given back", async () => {
    const funder = privateKeyToAccount(generatePrivateKey());
    await mint(funder.address, 10n * DOLLAR);
    const { session, channelId } = await openFor(funder, DOLLAR);
    const errors: unknown[] = [];
    const pay = createPayingFetch(fetch, {
      sessionAccount: session,
      channel: channelId,
      maxPerRequest: DOLLAR,
      maxTotal: 10n * DOLLAR,
      // $0.50 is under the relay's minimum top-up ($1, the server's minDeposit): refused with 422.
      autoTopUp: {
        below: 2n * DOLLAR,
        amount: 500_000n,
        funding: { kind: "relay", payer: funder },
        onError: (e) => errors.push(e),
      },
      maxTopUpTotal: DOLLAR,
    });
    const first = await pay(`${baseUrl}/big?fail=1`);
    expect(first.status).to.equal(200);
    expect(first.payment?.charge).to.equal(250_000n);
    expect(first.payment?.topUp).to.equal(undefined);
    expect(first.payment?.topUpError).to.be.instanceOf(ChannelOperationError);
    expect((first.payment?.topUpError as ChannelOperationError).code).to.equal("topup_too_small");
    expect(errors).to.have.length(1);
    expect(pay.toppedUp).to.equal(0n);
    // The next attempt waits retryAfterMs: the following answer does not try again.
    const second = await pay(`${baseUrl}/big?fail=2`);
    expect(second.payment?.topUpError).to.equal(undefined);
    expect(errors).to.have.length(1);
    expect((await onChain(channelId)).deposit).to.equal(DOLLAR);
    expect(() =>
      createPayingFetch(fetch, {
        sessionAccount: session,
        channel: channelId,
        maxPerRequest: DOLLAR,
        maxTotal: DOLLAR,
        autoTopUp: { below: 1n, amount: DOLLAR, funding: { kind: "relay", payer: funder } },
      }),
    ).to.throw(TypeError, /autoTopUp needs maxTopUpTotal/);
  });

  it("paychan deploy --network hardhat: a dry run printing the deterministic address", async () => {
    const result = await cli(["deploy", "--network", "hardhat"]);
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.include("running npx hardhat deploy --network hardhat --tags PaymentChannels");
    const out = JSON.parse(result.stdout) as { network: string; address: string };
    expect(out.network).to.equal("hardhat");
    expect(out.address.toLowerCase()).to.equal(contract.toLowerCase());
  });

  it("paychan withdraw with an encrypted keystore, then --finalize after the delay (evm_increaseTime)", async () => {
    const { channelId, id } = await openFor(payer, 2n * DOLLAR);
    const keystore = path.join(dir, "payer.keystore.json");
    writeFileSync(
      keystore,
      encryptKeystoreJsonSync({ address: payer.address, privateKey: PAYER_KEY }, "correct horse", {
        scrypt: { N: 1024 },
      }),
    );
    const wrong = await cli(["withdraw", "--channel", id, "--keystore", keystore, ...local()], {
      PAYCHAN_KEYSTORE_PASSWORD: "wrong",
    });
    expect(wrong.code).to.equal(2);
    expect(wrong.stderr).to.include(`wrong password for keystore ${keystore}`);
    const noPassword = await cli(["withdraw", "--channel", id, "--keystore", keystore, ...local()]);
    expect(noPassword.code).to.equal(2);
    expect(noPassword.stderr).to.include("PAYCHAN_KEYSTORE_PASSWORD is not set and there is no terminal to ask on");
    expect((await onChain(channelId)).withdrawReadyAt).to.equal(0);
    // On a terminal the password is asked for, without echo: the key decrypts (and the command
    // gets as far as the chain: nothing is pending to finalize yet).
    const prompted = await cliOnTty(
      ["withdraw", "--channel", id, "--finalize", "--keystore", keystore, ...local()],
      {},
      "correct horse\r",
    );
    if (prompted) {
      expect(prompted.stdout).to.include("password for payer.keystore.json:");
      expect(prompted.stdout).not.to.include("correct horse");
      expect(prompted.stdout).to.include("no withdrawal is pending on this channel");
      expect(prompted.code).to.equal(1);
    }

    const requested = await cli(["withdraw", "--channel", id, "--keystore", keystore, ...local()], {
      PAYCHAN_KEYSTORE_PASSWORD: "correct horse",
    });
    expect(requested.code, requested.stderr).to.equal(0);
    const out = JSON.parse(requested.stdout) as { channelId: string; withdrawReadyAt: number; txHash: string };
    expect(out.channelId).to.equal(id);
    expect(out.withdrawReadyAt).to.equal((await onChain(channelId)).withdrawReadyAt);
    expect(requested.stderr).to.match(/requesting withdrawal of channel 0x[0-9a-f]+ \(localhost\) \.\.\./);
    expect(requested.stderr).to.include(`paychan withdraw --channel ${id} --finalize`);

    const early = await cli(["withdraw", "--channel", id, "--finalize", ...local()], {
      PAYCHAN_PAYER_PRIVATE_KEY: PAYER_KEY,
    });
    expect(early.code).to.equal(1);
    expect(early.stderr).to.match(/the withdraw delay has not passed: ready at .* \(in \d+ s\)/);

    // Last test of the file: moving the clock would expire the relay authorizations of later ones.
    await publicClient.request({ method: "evm_increaseTime" as never, params: [3601] as never });
    await publicClient.request({ method: "evm_mine" as never });
    const before = await balance(payer.address);
    const finalized = await cli(["withdraw", "--channel", id, "--finalize", ...local()], {
      PAYCHAN_PAYER_PRIVATE_KEY: PAYER_KEY,
    });
    expect(finalized.code, finalized.stderr).to.equal(0);
    expect(JSON.parse(finalized.stdout)).to.deep.include({
      channelId: id,
      status: "closed",
      returnedAtMost: "2000000",
    });
    expect((await onChain(channelId)).status).to.equal("closed");
    expect((await balance(payer.address)) - before).to.equal(2n * DOLLAR);
  });
});
