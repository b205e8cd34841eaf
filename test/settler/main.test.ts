import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { privateKeyToAccount } from "viem/accounts";
import { ConfigError, PAYEE_ADDRESS_ENV, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import {
  loadSettleConfig,
  parseSettleArgs,
  parseSettleConfig,
  reportJson,
  SETTLER_DEFAULTS,
  SETTLER_KEY_ENV,
  startSettler,
} from "../../src/settler/main";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/** `paychan settle` configuration and arguments (the end-to-end run is in settler.test.ts). */

const SETTLER_KEY = HARDHAT_KEYS[5];
const PAYEE_KEY = HARDHAT_KEYS[2];
const OTHER_PAYEE = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

const BASE = {
  upstream: "http://127.0.0.1:3000",
  network: "localhost",
  contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  token: { address: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", decimals: 6 },
  routes: { "GET /weather": "$0.001" },
  minWithdrawDelay: 3600,
  database: { path: "settler.db" },
};

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return [...(error as ConfigError).issues];
  }
  expect.fail("expected a ConfigError");
}

describe("paychan settle: configuration", () => {
  it("reads the server's file; without a settler section every setting takes its default", () => {
    const config = parseSettleConfig(BASE, { env: { [SETTLER_KEY_ENV]: SETTLER_KEY }, baseDir: "/srv/paychan" });
    const settlerAddress = privateKeyToAccount(SETTLER_KEY).address;
    expect(config.sender).to.equal(settlerAddress);
    expect(config.senderKey).to.equal(SETTLER_KEY);
    // No payee key: the settler's own address is the payee.
    expect(config.server.payee).to.equal(settlerAddress);
    expect(config.server.database.path).to.equal("/srv/paychan/settler.db");
    expect(config.server.contract).to.equal(BASE.contract);
    expect(config.settler).to.deep.equal({
      policy: { minUnclaimed: 1_000_000n, maxAgeSec: SETTLER_DEFAULTS.maxAgeSec, maxBatchSize: 200 },
      intervalSec: 300,
      replaceAfterMs: 60_000,
      feeBumpPercent: 20,
      sendTimeoutMs: 600_000,
      watch: true,
    });
    // The key never shows in logs or JSON.
    expect(Object.keys(config)).to.not.include("senderKey");
    expect(JSON.stringify(config, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).to.not.include(
      SETTLER_KEY.slice(2),
    );
  });

  it("parses every settler setting", () => {
    const config = parseSettleConfig(
      {
        ...BASE,
        settler: {
          minUnclaimed: "$0.25",
          maxAgeSec: 7200,
          maxBatchSize: 50,
          maxGasPriceGwei: 0.5,
          intervalSec: 60,
          replaceAfterMs: 30_000,
          feeBumpPercent: 15,
          sendTimeoutMs: 120_000,
          watch: false,
        },
      },
      { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
    );
    expect(config.settler).to.deep.equal({
      policy: { minUnclaimed: 250_000n, maxAgeSec: 7200, maxBatchSize: 50, maxGasPriceWei: 500_000_000n },
      intervalSec: 60,
      replaceAfterMs: 30_000,
      feeBumpPercent: 15,
      sendTimeoutMs: 120_000,
      watch: false,
    });
    const atomic = parseSettleConfig(
      { ...BASE, settler: { minUnclaimed: "1234", maxGasPriceGwei: "2" } },
      {
        env: { [SETTLER_KEY_ENV]: SETTLER_KEY },
      },
    ).settler.policy;
    expect(atomic).to.deep.include({ minUnclaimed: 1234n, maxGasPriceWei: 2_000_000_000n });
  });

  it("falls back to the payee key, and follows PAYCHAN_PAYEE_ADDRESS when set", () => {
    const payee = privateKeyToAccount(PAYEE_KEY).address;
    const fallback = parseSettleConfig(BASE, { env: { [PAYEE_KEY_ENV]: PAYEE_KEY } });
    expect(fallback.sender).to.equal(payee);
    expect(fallback.server.payee).to.equal(payee);
    const both = parseSettleConfig(BASE, { env: { [PAYEE_KEY_ENV]: PAYEE_KEY, [SETTLER_KEY_ENV]: SETTLER_KEY } });
    expect(both.sender).to.equal(privateKeyToAccount(SETTLER_KEY).address);
    expect(both.server.payee).to.equal(payee);
    const other = parseSettleConfig(BASE, {
      env: { [SETTLER_KEY_ENV]: SETTLER_KEY, [PAYEE_ADDRESS_ENV]: OTHER_PAYEE },
    });
    expect(other.server.payee).to.equal(OTHER_PAYEE);
  });

  it("ignores the relay section and its key, which only the server uses", () => {
    const config = parseSettleConfig(
      { ...BASE, relay: { path: "/relay" } },
      { env: { [SETTLER_KEY_ENV]: SETTLER_KEY, [RELAYER_KEY_ENV]: "not a key" } },
    );
    expect(config.server.relay).to.equal(null);
  });

  it("lists every problem at once: keys, settler settings and the server's own", () => {
    expect(issuesOf(() => parseSettleConfig(BASE, { env: {} }))).to.deep.equal([
      `environment ${SETTLER_KEY_ENV}: required (or ${PAYEE_KEY_ENV}); the key that sends claims`,
    ]);
    expect(issuesOf(() => parseSettleConfig(BASE, { env: { [SETTLER_KEY_ENV]: "0x1234" } }))).to.deep.equal([
      `environment ${SETTLER_KEY_ENV}: must be a valid 32-byte hex secp256k1 private key`,
    ]);
    const issues = issuesOf(() =>
      parseSettleConfig(
        {
          ...BASE,
          contract: "0x123",
          settler: {
            minUnclaimed: "$0.0000001",
            maxAgeSec: 0,
            maxBatchSize: 5_000,
            maxGasPriceGwei: 0,
            intervalSec: 1.5,
            feeBumpPercent: 5,
            watch: "yes",
            batchSize: 10,
          },
        },
        { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
      ),
    );
    const paths = issues.map((issue) => issue.split(":")[0]);
    expect(paths).to.have.members([
      "config.contract",
      "config.settler.batchSize",
      "config.settler.minUnclaimed",
      "config.settler.maxAgeSec",
      "config.settler.maxBatchSize",
      "config.settler.maxGasPriceGwei",
      "config.settler.intervalSec",
      "config.settler.feeBumpPercent",
      "config.settler.watch",
    ]);
    expect(issues.join("\n")).to.not.include(SETTLER_KEY.slice(2));
  });

  it("refuses a schedule too slow for the shortest withdraw delay", () => {
    const issues = issuesOf(() =>
      parseSettleConfig(
        { ...BASE, minWithdrawDelay: 900, settler: { intervalSec: 301 } },
        { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
      ),
    );
    expect(issues).to.have.length(1);
    expect(issues[0]).to.match(/^config\.settler\.intervalSec: 301 s leaves too little of the 900 s/);
    const ok = parseSettleConfig(
      { ...BASE, minWithdrawDelay: 900, settler: { intervalSec: 300 } },
      { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
    );
    expect(ok.settler.intervalSec).to.equal(300);
  });

  it("loads a file, resolving the database next to it, and reports unreadable files", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-settle-config-"));
    try {
      const file = path.join(dir, "paychan.config.json");
      writeFileSync(file, JSON.stringify(BASE));
      const config = loadSettleConfig(file, { [SETTLER_KEY_ENV]: SETTLER_KEY });
      expect(config.server.database.path).to.equal(path.join(dir, "settler.db"));
      expect(config.server.source).to.equal(file);
      writeFileSync(file, "{ not json");
      expect(issuesOf(() => loadSettleConfig(file, { [SETTLER_KEY_ENV]: SETTLER_KEY }))[0]).to.match(/^not valid JSON/);
      expect(issuesOf(() => loadSettleConfig(path.join(dir, "missing.json"), {}))[0]).to.match(/file not found$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

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
        "config.settler.intervalSec: must be a whole number in [1, 86400], got 0",
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
});
