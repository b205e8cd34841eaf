import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../helpers/hardhatNode";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";
import { runPaychan as cli } from "../helpers/cli";

/**
 * Every command whose RPC endpoint or server is unreachable says so in one line (what failed,
 * which URL and network) plus one line with the fix: no `HttpRequestError`, no `TypeError: fetch
 * failed`, no stack trace, unless PAYCHAN_DEBUG=1 asks for it.
 */

const CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

describe("CLI: unreachable RPC endpoints and servers (no chain)", function () {
  this.timeout(120_000);

  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-cli-failures-"));
    // A state with one channel, so that `status` reads the chain.
    writeFileSync(
      path.join(dir, "state.json"),
      JSON.stringify({
        version: 1,
        channels: {
          [`eip155:31337:${CONTRACT.toLowerCase()}:0x1`]: {
            channelId: "0x1",
            signedMax: "0",
            chargedKnown: "0",
            receipts: 0,
          },
        },
        offers: {},
      }),
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("status, topup, withdraw, faucet, open and pay: one line naming the URL and network, one fix line, exit 1", async () => {
    const port = await freePort(); // nothing listens there
    const down = `http://127.0.0.1:${port}`;
    const key = { PAYCHAN_PAYER_PRIVATE_KEY: HARDHAT_KEYS[5] };
    const rpc = ["--network", "localhost", "--rpc", down];
    const runs = {
      status: await cli(["status", ...rpc, "--state", dir]),
      topup: await cli(["topup", "--channel", "0x1", "--amount", "1", ...rpc, "--contract", CONTRACT], key),
      withdraw: await cli(["withdraw", "--channel", "0x1", ...rpc, "--contract", CONTRACT], key),
      faucet: await cli(["faucet", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "--token", CONTRACT, ...rpc]),
      open: await cli(["open", `${down}/paid`, "--deposit", "$1", "--state", dir], key),
      pay: await cli(["pay", `${down}/paid`, "--state", dir]),
    };
    const rpcLines = (command: string) =>
      `paychan ${command}: cannot reach the localhost JSON-RPC endpoint ${down}: connection refused: nothing listens there\n` +
      "  fix: start the node (npx hardhat node), or point --rpc (or LOCALHOST_RPC_URL) at a running localhost node\n";
    for (const command of ["status", "topup", "withdraw", "faucet"] as const) {
      expect(runs[command].code, `${command}: ${runs[command].stderr}`).to.equal(1);
      expect(runs[command].stderr, command).to.equal(rpcLines(command));
    }
    for (const command of ["open", "pay"] as const) {
      expect(runs[command].code, `${command}: ${runs[command].stderr}`).to.equal(1);
      expect(runs[command].stderr, command).to.equal(
        `paychan ${command}: cannot reach ${down}/paid: connection refused: nothing listens there\n` +
          "  fix: check the URL, and that the server runs and is reachable from here\n",
      );
    }
    for (const [command, run] of Object.entries(runs)) {
      expect(run.stderr, command).not.to.match(/HttpRequestError|TypeError|fetch failed|\n\s+at /);
      expect(run.stdout, command).to.equal("");
    }

    // PAYCHAN_DEBUG=1 adds the stack for a bug report.
    const debug = await cli(["status", ...rpc, "--state", dir], { PAYCHAN_DEBUG: "1" });
    expect(debug.code).to.equal(1);
    expect(debug.stderr.startsWith(rpcLines("status"))).to.equal(true);
    expect(debug.stderr).to.match(/\n\s+at /);
  });
});
