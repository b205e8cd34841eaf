import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  createPublicClient,
  createWalletClient,
  http as httpTransport,
  parseEventLogs,
  type Address,
  type Hex,
  type PublicClient,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";
import { ChainSetupError } from "../../src/chain/setupError";
import {
  channelIdHex,
  decodeHeader,
  encodePaymentSignature,
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  type PaymentRequired,
} from "../../src/protocol/headers";
import { voucherDomain, voucherTypedData } from "../../src/protocol/voucher";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { settle } from "../../src/settler/main";
import { freePort, startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { runPaychan as paychan } from "../helpers/cli";
import { writeLocalConfig } from "../helpers/localServer";

/**
 * Start-up against a chain that is not there or a contract that is not PaymentChannels: `paychan
 * server` (with and without its settler) and `paychan settle` refuse to start the same way, with
 * one line saying what failed and one saying how to fix it, no stack trace, exit code 1. And a
 * channel that exists on-chain but pays another payee is answered `wrong_payee`.
 */

const PAYER_KEY: Hex = HARDHAT_KEYS[1];
const PAYEE_KEY: Hex = HARDHAT_KEYS[2];
const OTHER_PAYEE: Address = privateKeyToAccount(HARDHAT_KEYS[4]).address;

/** A server configuration file in `dir` for `rpcUrl` and `contract` (the settler's schedule fits its minimum delay). */
function writeConfig(dir: string, name: string, rpcUrl: string, contract: Address, token: Address): string {
  return writeLocalConfig(
    path.join(dir, `${name}.json`),
    { rpcUrl, contract, token },
    {
      routes: { "GET /paid": "$0.001" },
      settler: { intervalSec: 60 },
    },
  );
}

describe("start-up checks: chain down, wrong contract; wrong_payee for another payee's channel", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let dir: string;
  let usdc: Address;
  let contract: Address;
  const env = { [PAYEE_KEY_ENV]: PAYEE_KEY, PAYCHAN_LOG_LEVEL: "info" };

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-startup-"));
  });

  after(async () => {
    await node?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("paychan server, server --no-settler and settle with the chain down: one line and a fix, no stack, exit 1", async () => {
    const port = await freePort(); // nothing listens there
    const rpcUrl = `http://127.0.0.1:${port}`;
    const config = writeConfig(dir, "down", rpcUrl, contract, usdc);
    const expected =
      `cannot reach the localhost JSON-RPC endpoint ${rpcUrl}: connection refused: nothing listens there\n` +
      `  fix: start the node (npx hardhat node), or point config.rpcUrl (or LOCALHOST_RPC_URL) at a running localhost node\n`;
    const runs = await Promise.all([
      paychan(["server", "--config", config], env),
      paychan(["server", "--no-settler", "--config", config], env),
      paychan(["settle", "--config", config], env),
    ]);
    for (const [i, prefix] of ["paychan server", "paychan server", "paychan settle"].entries()) {
      expect(runs[i].code, runs[i].stderr).to.equal(1);
      expect(runs[i].stderr).to.equal(`${prefix}: ${expected}`);
      expect(runs[i].stdout).to.equal("");
    }
    // PAYCHAN_DEBUG=1 adds the stack, for a bug report.
    const debug = await paychan(["server", "--no-settler", "--config", config], { ...env, PAYCHAN_DEBUG: "1" });
    expect(debug.code).to.equal(1);
    expect(debug.stderr.startsWith(`paychan server: ${expected}`)).to.equal(true);
    expect(debug.stderr).to.match(/\n\s+at /);
  });

  it("refuses a contract that is not PaymentChannels (the token) or an address without code, server and settler alike", async () => {
    const config = writeConfig(dir, "token", node.url, usdc, usdc);
    const run = await paychan(["server", "--no-settler", "--config", config], env);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.equal(
      `paychan server: ${usdc} on localhost is not a PaymentChannels contract (it does not answer domainSeparator() and VOUCHER_TYPEHASH())\n` +
        "  fix: set config.contract to the PaymentChannels address on localhost (paychan deploy --network localhost prints it)\n",
    );
    // The settler says the same, and so does startChain() for the Express middleware.
    const out: string[] = [];
    const code = await settle(config, {
      env: { ...process.env, ...env },
      logger: createLogger({ level: "silent" }),
      stderr: { write: (text: string) => out.push(text) },
    });
    expect(code).to.equal(1);
    expect(out.join("")).to.equal(run.stderr.replace("paychan server:", "paychan settle:"));
    const noCode = privateKeyToAccount(generatePrivateKey()).address;
    const server = await createPaymentServer(
      loadConfig(writeConfig(dir, "nocode", node.url, noCode, usdc), { ...process.env, ...env }),
      { logger: createLogger({ level: "silent" }) },
    );
    try {
      const error = await server.startChain().then(
        () => expect.fail("started against an address without code"),
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(ChainSetupError);
      expect((error as ChainSetupError).message).to.equal(`no contract at ${noCode} on localhost`);
    } finally {
      await server.stop();
    }
  });

  it("answers wrong_payee (not unknown_channel) for a channel opened on-chain to another payee", async () => {
    const payer = privateKeyToAccount(PAYER_KEY);
    const session = privateKeyToAccount(generatePrivateKey());
    const wallet = createWalletClient({ account: payer, chain: hardhat, transport: httpTransport(node.url) });
    const write = async (to: Address, abi: typeof usdcAbi | typeof paymentChannelsAbi, fn: string, args: unknown[]) => {
      const hash = await wallet.writeContract({ address: to, abi, functionName: fn, args } as Parameters<
        typeof wallet.writeContract
      >[0]);
      return publicClient.waitForTransactionReceipt({ hash });
    };
    await write(usdc, usdcAbi, "mint", [payer.address, 5_000_000n]);
    await write(usdc, usdcAbi, "approve", [contract, 5_000_000n]);
    const opened = await write(contract, paymentChannelsAbi, "open", [
      OTHER_PAYEE,
      usdc,
      session.address,
      86_400,
      5_000_000n,
    ]);
    const [event] = parseEventLogs({ abi: paymentChannelsAbi, eventName: "ChannelOpened", logs: opened.logs });
    const channelId = event.args.channelId;

    let server: PaymentServer | undefined;
    try {
      server = await createPaymentServer(
        loadConfig(writeConfig(dir, "payee", node.url, contract, usdc), { ...process.env, ...env }),
        { logger: createLogger({ level: "silent" }) },
      );
      const base = `http://127.0.0.1:${(await server.start()).port}`;
      const offer = decodeHeader<PaymentRequired>((await fetch(`${base}/paid`)).headers.get(PAYMENT_REQUIRED_HEADER)!)
        .accepts[0];
      const pay = async (id: bigint) => {
        const signature = await session.signTypedData(
          voucherTypedData(voucherDomain(31337, contract), { channelId: id, cumulativeAmount: 1_000n }),
        );
        const header = encodePaymentSignature(offer, { channelId: channelIdHex(id), amount: "1000", signature });
        const response = await fetch(`${base}/paid`, { headers: { [PAYMENT_SIGNATURE_HEADER]: header } });
        return { status: response.status, body: (await response.json()) as PaymentRequired };
      };
      for (let i = 0; i < 2; i++) {
        const refused = await pay(channelId);
        expect(refused.status).to.equal(402);
        expect(refused.body.error).to.equal("wrong_payee");
      }
      // The channel is not ours: neither kept nor followed.
      expect(server.engine.record(channelId)).to.equal(undefined);
      expect(server.store.getChannel(channelId)).to.equal(undefined);
      // A channel that does not exist at all is still unknown_channel.
      expect((await pay(channelId + 1n)).body.error).to.equal("unknown_channel");
    } finally {
      await server?.stop();
    }
  });
});
