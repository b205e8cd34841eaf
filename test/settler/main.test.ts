import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { idlePassReason, parseSettleArgs, reportJson, startSettler } from "../../src/settler/main";
import { ConfigError, PAYEE_KEY_ENV, SETTLER_KEY_ENV, type SettlerPolicy } from "../../src/shared/config";

const BASE = {
  upstream: "http://127.0.0.1:3000",
  network: "localhost",
  contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  token: { address: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", decimals: 6 },
  routes: { "GET /weather": "$0.001" },
  minWithdrawDelay: 3600,
  database: { path: "settler.db" },
};

/** `paychan settle` arguments and output (its configuration is tested with the config module; the end-to-end run is in settler.test.ts). */

describe("startSettler", () => {
  it("reads the file it is given with the environment it is given, and refuses a bad configuration before any RPC call", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-start-settler-"));
    try {
      const file = path.join(dir, "paychan.config.json");
      // Port 1 answers nothing: reaching the chain would fail differently, and slowly.
      writeFileSync(file, JSON.stringify({ ...BASE, rpcUrl: "http://127.0.0.1:1", settler: { intervalSec: 0 } }));
      const error = await startSettler(file, { env: {} }).then(
        () => expect.fail("expected startSettler to refuse the configuration"),
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(ConfigError);
      expect((error as ConfigError).issues).to.include.members([
        `environment ${SETTLER_KEY_ENV}: required (or ${PAYEE_KEY_ENV}); the key that sends claims`,
        "config.settler.intervalSec: 0 is outside [1, 86400]",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("paychan settle: arguments and output", () => {
  it("parses --config, --config=, -c and --now; defaults to $PAYCHAN_CONFIG, then paychan.config.json", () => {
    expect(parseSettleArgs(["--config", "a.json", "--now"], {})).to.deep.equal({ configPath: "a.json", now: true });
    expect(parseSettleArgs(["--now", "--config=b.json"], {})).to.deep.equal({ configPath: "b.json", now: true });
    expect(parseSettleArgs(["-c", "c.json"], {})).to.deep.equal({ configPath: "c.json", now: false });
    expect(parseSettleArgs([], { PAYCHAN_CONFIG: "env.json" })).to.deep.equal({ configPath: "env.json", now: false });
    expect(parseSettleArgs([], {})).to.deep.equal({ configPath: "paychan.config.json", now: false });
    expect(parseSettleArgs(["--help"], {})).to.deep.equal({ help: true });
    expect(parseSettleArgs(["--config"], {})).to.have.property("error");
    expect(parseSettleArgs(["--config", "--now"], {})).to.have.property("error");
    expect(parseSettleArgs(["--nwo"], {})).to.deep.equal({ error: 'unknown argument "--nwo"' });
  });

  it("prints a batch report as one JSON line with amounts as decimal strings", () => {
    const line = reportJson({
      txHash: "0xabc",
      channels: 3,
      amountClaimed: 12_345_678_901_234_567_890n,
      gasUsed: 100_000n,
      l1FeeWei: 0n,
      costWei: 2n ** 70n,
      costPerChannelWei: 2n ** 70n / 3n,
      urgent: false,
    });
    expect(line).to.not.include("\n");
    expect(JSON.parse(line)).to.deep.equal({
      txHash: "0xabc",
      channels: 3,
      amountClaimed: "12345678901234567890",
      gasUsed: "100000",
      l1FeeWei: "0",
      costWei: (2n ** 70n).toString(),
      costPerChannelWei: (2n ** 70n / 3n).toString(),
      urgent: false,
    });
  });

  describe("why a pass claimed nothing", () => {
    const policy: SettlerPolicy = { minUnclaimed: 1_000_000n, maxAgeSec: 86_400, maxBatchSize: 200 };

    it("says so when no channel owes anything", () => {
      expect(idlePassReason(undefined, policy, 6)).to.equal("nothing claimed: no channel has an unclaimed voucher");
      const empty = { candidates: 0, unclaimed: 0n, selected: 0, deferredForGas: 0 };
      expect(idlePassReason(empty, policy, 6)).to.equal("nothing claimed: no channel has an unclaimed voucher");
    });

    it("names the thresholds the channels are below, with the amounts in dollars", () => {
      const pass = { candidates: 3, unclaimed: 420_000n, selected: 0, deferredForGas: 0 };
      expect(idlePassReason(pass, policy, 6)).to.equal(
        "nothing claimed: 3 channels hold $0.42 unclaimed; 3 are below settler.minUnclaimed ($1) and younger than " +
          "settler.maxAgeSec (86400 s), and are claimed once they reach either or their payers ask to withdraw",
      );
      const one = { candidates: 1, unclaimed: 5_000n, selected: 0, deferredForGas: 0 };
      expect(idlePassReason(one, { ...policy, minUnclaimed: 10_000n }, 6)).to.equal(
        "nothing claimed: 1 channel holds $0.005 unclaimed; 1 is below settler.minUnclaimed ($0.01) and younger than " +
          "settler.maxAgeSec (86400 s), and is claimed once it reaches either or its payer asks to withdraw",
      );
    });

    it("counts channels held back by the gas price ceiling and claims that failed", () => {
      const pass = { candidates: 5, unclaimed: 7_000_000n, selected: 1, deferredForGas: 3 };
      expect(idlePassReason(pass, { ...policy, maxGasPriceWei: 500_000_000n }, 6)).to.equal(
        "nothing claimed: 5 channels hold $7 unclaimed; 1 is below settler.minUnclaimed ($1) and younger than " +
          "settler.maxAgeSec (86400 s), and is claimed once it reaches either or its payer asks to withdraw; " +
          "3 wait for the gas price to fall to settler.maxGasPriceGwei (0.5 gwei); " +
          "1 could not be claimed this time (see the warnings above)",
      );
    });
  });
});
