import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { inspect } from "node:util";
import { privateKeyToAccount } from "viem/accounts";
import {
  ConfigError,
  CONFIG_DEFAULTS,
  loadConfig,
  loadSettleConfig,
  DATABASE_URL_ENV,
  parseConfig,
  parseSettleConfig,
  PAYEE_ADDRESS_ENV,
  PAYEE_KEY_ENV,
  RELAYER_KEY_ENV,
  SETTLER_DEFAULTS,
  SETTLER_KEY_ENV,
  type ServerConfig,
} from "../../src/shared/config";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

const PAYEE_KEY = HARDHAT_KEYS[1];
const RELAYER_KEY = HARDHAT_KEYS[2];
const SETTLER_KEY = HARDHAT_KEYS[5];
const CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";

const ENV = { [PAYEE_KEY_ENV]: PAYEE_KEY };

function base(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstream: "http://127.0.0.1:3000",
    network: "localhost",
    contract: CONTRACT,
    token: { address: TOKEN },
    routes: { "GET /weather": "$0.001" },
    ...overrides,
  };
}

/** The issues parseConfig reports for `raw`; fails the test if it does not throw ConfigError. */
function issuesOf(raw: unknown, env: NodeJS.ProcessEnv = ENV): readonly string[] {
  try {
    parseConfig(raw, { env, baseDir: "/srv/paychan" });
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  expect.fail("parseConfig accepted an invalid configuration");
}

function parse(raw: unknown, env: NodeJS.ProcessEnv = ENV): ServerConfig {
  return parseConfig(raw, { env, baseDir: "/srv/paychan" });
}

/** The issues a call throws; fails the test if it does not throw ConfigError. */
function issuesThrownBy(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  expect.fail("expected a ConfigError");
}

describe("server config", () => {
  describe("a minimal valid file", () => {
    it("applies the documented defaults", () => {
      const config = parse(base());
      expect(config.upstream.toString()).to.equal("http://127.0.0.1:3000/");
      expect(config.listen).to.deep.equal({ host: CONFIG_DEFAULTS.host, port: CONFIG_DEFAULTS.port });
      expect(config.network.chainId).to.equal(31337);
      expect(config.rpcUrl).to.equal("http://127.0.0.1:8545");
      expect(config.token).to.deep.equal({ address: TOKEN, decimals: 6, name: "USD Coin", version: "2" });
      expect(config.routes).to.deep.equal({ "GET /weather": "1000" });
      expect(config.unmatchedRoutes).to.equal("reject");
      expect(config.minDeposit).to.equal(1_000_000n);
      expect(config.minWithdrawDelay).to.equal(86_400);
      expect(config.withdrawSafetyMarginSec).to.equal(3_600);
      expect(config.confirmations).to.equal(0);
      expect(config.fromBlock).to.equal(1n);
      expect(config.database).to.deep.equal({
        path: "/srv/paychan/paychan.db",
        durable: true,
        fsync: "background",
        url: undefined,
        leaseMs: 15_000,
      });
      expect(config.retryWindowMs).to.equal(60_000);
      expect(config.maxHeaderBytes).to.equal(16_384);
      expect(config.healthPath).to.equal("/healthz");
      expect(config.metricsPath).to.equal("/metrics");
      expect(config.relay).to.equal(null);
    });

    it("derives the payee and receipt signer from PAYCHAN_PAYEE_PRIVATE_KEY", () => {
      const address = privateKeyToAccount(PAYEE_KEY).address;
      const config = parse(base());
      expect(config.payee).to.equal(address);
      expect(config.receiptSigner).to.equal(address);
      expect(config.secrets.payeeKey).to.equal(PAYEE_KEY);
    });

    it("uses PAYCHAN_PAYEE_ADDRESS as the payee when set, keeping the key as receipt signer", () => {
      const payee = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
      const config = parse(base(), { ...ENV, [PAYEE_ADDRESS_ENV]: payee });
      expect(config.payee).to.equal(payee);
      expect(config.receiptSigner).to.equal(privateKeyToAccount(PAYEE_KEY).address);
    });

    it("never exposes secrets through JSON or util.inspect", () => {
      const config = parse(base(), { ...ENV, [RELAYER_KEY_ENV]: RELAYER_KEY });
      const json = JSON.stringify(config, (_key, value: unknown) =>
        typeof value === "bigint" ? value.toString() : value,
      );
      const inspected = inspect(config, { depth: 10 });
      for (const text of [json, inspected]) {
        expect(text).not.to.include(PAYEE_KEY.slice(2));
        expect(text).not.to.include(RELAYER_KEY.slice(2));
      }
      expect(config.secrets.relayerKey).to.equal(RELAYER_KEY);
    });
  });

  describe("network defaults", () => {
    it("uses the network's USDC, EIP-712 domain and confirmations, and its RPC variable", () => {
      const raw = base({ network: "base-sepolia", token: undefined });
      delete raw.token;
      const config = parse(raw, { ...ENV, BASE_SEPOLIA_RPC_URL: "https://sepolia.base.example/rpc" });
      expect(config.token.address).to.equal("0x036CbD53842c5426634e7929541eC2318f3dCF7e");
      expect(config.token.name).to.equal("USDC");
      expect(config.confirmations).to.equal(5);
      expect(config.rpcUrl).to.equal("https://sepolia.base.example/rpc");
      expect(config.fromBlock).to.equal("latest");
    });

    it("requires an RPC URL on remote networks", () => {
      const raw = base({ network: "base" });
      delete raw.token;
      expect(issuesOf(raw)).to.deep.equal([
        "config.rpcUrl: required (or set BASE_RPC_URL in the environment) on network base",
      ]);
    });

    it("requires a token address on local networks (no canonical USDC)", () => {
      const raw = base();
      delete raw.token;
      expect(issuesOf(raw)).to.deep.equal([
        "config.token.address: required on network localhost (it has no canonical USDC)",
      ]);
    });

    it("lists several tokens with fixed and feed rates; token alone is USDC at one dollar", () => {
      const feed = "0x1111111111111111111111111111111111111111";
      const eurc = "0x2222222222222222222222222222222222222222";
      const raw = base({
        tokens: [
          { address: TOKEN, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" },
          {
            address: eurc,
            symbol: "EURC",
            decimals: 6,
            name: "EURC",
            version: "2",
            rate: { feed, maxAgeSec: 600 },
            quoteTtlSec: 60,
            lockRate: "channel",
          },
        ],
      });
      delete raw.token;
      const config = parse(raw);
      expect(config.tokens).to.deep.equal([
        {
          address: TOKEN,
          symbol: "USDC",
          decimals: 6,
          name: "USD Coin",
          version: "2",
          rate: { kind: "fixed", rate: 10n ** 18n },
          quoteTtlSec: 300,
          lockRate: "quote",
        },
        {
          address: eurc,
          symbol: "EURC",
          decimals: 6,
          name: "EURC",
          version: "2",
          rate: { kind: "feed", feed, maxAgeSec: 600 },
          quoteTtlSec: 60,
          lockRate: "channel",
        },
      ]);
      expect(config.token).to.deep.equal({ address: TOKEN, decimals: 6, name: "USD Coin", version: "2" });
      const single = parse(base());
      expect(single.tokens).to.have.length(1);
      expect(single.tokens[0]).to.deep.include({
        address: TOKEN,
        symbol: "USDC",
        rate: { kind: "fixed", rate: 10n ** 18n },
      });
    });

    it("names each bad token field, a repeated token, and token given with tokens", () => {
      const good = { address: TOKEN, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" };
      const raw = base({
        tokens: [
          good,
          { ...good, symbol: "EUR C", rate: "0" },
          { ...good, address: "0x2222222222222222222222222222222222222222", rate: { feed: "0x12" } },
          { ...good, address: "0x3333333333333333333333333333333333333333", symbol: "X", rate: { maxAgeSec: 0 } },
        ],
      });
      delete raw.token;
      const issues = issuesOf(raw);
      expect(issues.join("\n")).to.match(/config\.tokens\[1\]\.symbol: must be a ticker like "EURC", got "EUR C"/);
      expect(issues.join("\n")).to.match(/config\.tokens\[1\]\.rate: rate must be above zero/);
      expect(issues.join("\n")).to.match(
        /config\.tokens\[2\]\.rate\.feed: "0x12" is not a 0x-prefixed 20-byte hex address/,
      );
      expect(issues.join("\n")).to.match(/config\.tokens\[3\]\.rate\.feed: required/);
      expect(issues.join("\n")).to.match(/config\.tokens\[3\]\.rate\.maxAgeSec: 0 is outside \[1, 604800\]/);
      const twice = base({ tokens: [good, { ...good, symbol: "EURC" }] });
      delete twice.token;
      expect(issuesOf(twice)).to.deep.equal([
        "config.tokens[1]: 0xe7f1725e7734ce288f8367e1bb143e90bb3f0512 is listed twice",
      ]);
      expect(issuesOf(base({ tokens: [good] }))).to.deep.equal([
        `config.tokens: give either "token" or "tokens", not both`,
      ]);
      const empty = base({ tokens: [] });
      delete empty.token;
      expect(issuesOf(empty)).to.deep.equal(["config.tokens: must name at least one token"]);
    });

    it("honours a confirmations override", () => {
      expect(parse(base({ confirmations: 3 })).confirmations).to.equal(3);
    });
  });

  describe("routes", () => {
    it("accepts dollar prices, atomic units, upto pricing and free routes", () => {
      const config = parse(
        base({
          routes: {
            "GET /a": "$0.0015",
            "POST /b": "2500",
            "/c/*": { price: "$1", pricing: "upto", description: "usage" },
            "GET /": null,
          },
        }),
      );
      expect(config.routes).to.deep.equal({
        "GET /a": "1500",
        "POST /b": "2500",
        "/c/*": { price: "1000000", pricing: "upto", description: "usage" },
        "GET /": null,
      });
    });

    it("names the route and the bad price", () => {
      expect(issuesOf(base({ routes: { "GET /x": "abc" } }))).to.deep.equal([
        `config.routes['GET /x']: price "abc" must be "$<dollars>" (e.g. "$0.001") or a string of atomic units (e.g. "1000")`,
      ]);
    });

    it("refuses more decimals than the token has", () => {
      expect(issuesOf(base({ routes: { "GET /x": "$0.0000001" } }))).to.deep.equal([
        `config.routes['GET /x']: price "$0.0000001" has more than the token's 6 decimals`,
      ]);
    });

    it("refuses a zero price (null is the free route)", () => {
      expect(issuesOf(base({ routes: { "GET /x": "$0" } }))).to.deep.equal([
        "config.routes['GET /x']: price must be above zero; use null for a free route",
      ]);
    });

    it("checks keys, methods, wildcards, pricing and unknown fields", () => {
      const issues = issuesOf(
        base({
          routes: {
            "get /x": "$1",
            "FETCH /y": "$1",
            "GET /a/*/b": "$1",
            "GET /z": { price: "$1", pricing: "maybe", cost: 1 },
            "GET /w": { pricing: "upto" },
            "GET /v": true,
          },
        }),
      );
      expect(issues).to.deep.equal([
        `config.routes['get /x']: the key must look like "GET /path", "/path" or "/path/*"`,
        "config.routes['FETCH /y']: unknown method FETCH; use one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        `config.routes['GET /a/*/b']: "*" is only allowed as the last segment ("/path/*")`,
        `config.routes['GET /z'].pricing: must be one of "fixed", "upto", got "maybe"`,
        `config.routes['GET /z']: unknown key "cost" (known: price, pricing, description, meter)`,
        "config.routes['GET /w'].price: a price is required",
        `config.routes['GET /v']: must be a price ("$0.001"), an object { "price", "pricing" } or null (free), got true`,
      ]);
    });

    it("requires a non-empty table", () => {
      const raw = base();
      delete raw.routes;
      expect(issuesOf(raw)).to.deep.equal([`config.routes: required; e.g. { "GET /weather": "$0.001" }`]);
      expect(issuesOf(base({ routes: {} }))).to.deep.equal(["config.routes: is empty; list at least one route"]);
    });
  });

  describe("every other field", () => {
    it("reports all problems at once, each with its path", () => {
      const issues = issuesOf(
        base({
          upstream: "ftp://x",
          listen: { port: 70_000, hots: "x" },
          network: "mainnet",
          contract: "0x5fbdb2315678afecb367f032d93F642f64180aa3",
          minDeposit: "one dollar",
          minWithdrawDelay: 60,
          withdrawSafetyMarginSec: -1,
          database: { path: "", durable: "yes" },
          retryWindowMs: 1.5,
          maxHeaderBytes: 1024,
          healthPath: "healthz",
          unmatchedRoutes: "allow",
          fromBlock: "genesis",
          rotues: {},
        }),
        {},
      );
      expect(issues).to.deep.equal([
        `config.upstream: "ftp://x" must use http:// or https://`,
        "config.listen.port: 70000 is outside [0, 65535]",
        `config.listen: unknown key "hots" (known: host, port)`,
        `config.network: "mainnet" is not a known network; use one of base, base-sepolia, optimism, optimism-sepolia, arbitrum-sepolia, localhost, hardhat`,
        "config.contract: 0x5fbdb2315678afecb367f032d93F642f64180aa3 has an invalid EIP-55 checksum (write it all lowercase to skip the check)",
        `config.unmatchedRoutes: must be one of "reject", "free", got "allow"`,
        `config.minDeposit: amount "one dollar" must be "$<dollars>" (e.g. "$0.001") or a string of atomic units (e.g. "1000")`,
        "config.minWithdrawDelay: 60 is outside [900, 2592000] (the contract's withdraw delay bounds)",
        "config.withdrawSafetyMarginSec: -1 is outside [0, 2592000]",
        `config.fromBlock: must be a block number or "latest", got "genesis"`,
        `config.database.path: must be a non-empty file path, got ""`,
        "config.database.durable: must be true or false",
        "config.retryWindowMs: must be a whole number of ms, got 1.5",
        "config.maxHeaderBytes: 1024 is outside [10240, 1048576]",
        `config.healthPath: must be an absolute path like "/healthz" (or null to disable), got "healthz"`,
        `config: unknown key "rotues" (known: ${[
          "$schema",
          "upstream",
          "listen",
          "publicUrl",
          "network",
          "rpcUrl",
          "contract",
          "token",
          "tokens",
          "routes",
          "unmatchedRoutes",
          "minDeposit",
          "minWithdrawDelay",
          "withdrawSafetyMarginSec",
          "confirmations",
          "pollIntervalMs",
          "fromBlock",
          "database",
          "retryWindowMs",
          "maxHeaderBytes",
          "upstreamTimeoutMs",
          "forwardBeforeDurable",
          "maxTimeoutSeconds",
          "healthPath",
          "metricsPath",
          "relay",
          "exact",
          "settler",
        ].join(", ")})`,
        "environment PAYCHAN_PAYEE_PRIVATE_KEY: required; a 0x-prefixed 32-byte hex private key",
      ]);
    });

    it("rejects a non-object file", () => {
      expect(issuesOf([])).to.deep.equal(["config: must be a JSON object"]);
    });

    it("never echoes a malformed private key", () => {
      const secret = "0x" + "ab".repeat(31);
      const issues = issuesOf(base(), { [PAYEE_KEY_ENV]: secret });
      expect(issues).to.deep.equal([
        "environment PAYCHAN_PAYEE_PRIVATE_KEY: must be a 32-byte hex private key (64 hex digits, optionally 0x-prefixed)",
      ]);
      expect(issues.join("")).not.to.include("abab");
      expect(issuesOf(base(), { [PAYEE_KEY_ENV]: "0x" + "0".repeat(64) })).to.deep.equal([
        "environment PAYCHAN_PAYEE_PRIVATE_KEY: is not a valid secp256k1 private key (must be in [1, n-1])",
      ]);
    });

    it("accepts a database path string, a non-durable store and either fsync mode", () => {
      expect(parse(base({ database: "data/x.db" })).database).to.deep.equal({
        path: "/srv/paychan/data/x.db",
        durable: true,
        fsync: "background",
        url: undefined,
        leaseMs: 15_000,
      });
      expect(parse(base({ database: { path: ":memory:", durable: false } })).database).to.deep.equal({
        path: ":memory:",
        durable: false,
        fsync: "background",
        url: undefined,
        leaseMs: 15_000,
      });
      expect(parse(base({ database: { path: "x.db", fsync: "commit" } })).database).to.include({ fsync: "commit" });
      expect(issuesOf(base({ database: { path: "x.db", durable: "yes", fsync: "always" } }))).to.deep.equal([
        "config.database.durable: must be true or false",
        'config.database.fsync: must be one of "background", "commit", got "always"',
      ]);
    });

    it("selects a shared PostgreSQL store by database.url or PAYCHAN_DATABASE_URL, the variable first", () => {
      const url = "postgres://paychan@db.internal:5432/paychan";
      expect(parse(base({ database: { url, leaseMs: 5_000 } })).database).to.include({ url, leaseMs: 5_000 });
      expect(parse(base(), { ...ENV, [DATABASE_URL_ENV]: url }).database.url).to.equal(url);
      expect(
        parse(base({ database: { url: "postgres://a/b" } }), { ...ENV, [DATABASE_URL_ENV]: url }).database.url,
      ).to.equal(url);
      expect(issuesOf(base({ database: { url: "mysql://x", leaseMs: 10 } }))).to.deep.equal([
        'config.database.url: must be a postgres:// URL, got "mysql://x"',
        "config.database.leaseMs: 10 is outside [1000, 300000]",
      ]);
    });
  });

  describe("relay", () => {
    it("is enabled at the default path exactly when a relayer key is set", () => {
      const config = parse(base(), { ...ENV, [RELAYER_KEY_ENV]: RELAYER_KEY });
      expect(config.relay).to.deep.equal({ path: "/paychan/relay" });
      expect(config.relayer).to.equal(privateKeyToAccount(RELAYER_KEY).address);
      expect(parse(base({ relay: false }), { ...ENV, [RELAYER_KEY_ENV]: RELAYER_KEY }).relay).to.equal(null);
    });

    it("refuses an explicit relay without a key, and clashing endpoint paths", () => {
      expect(issuesOf(base({ relay: { path: "/r" } }))).to.deep.equal([
        "config.relay: the relay needs PAYCHAN_RELAYER_PRIVATE_KEY in the environment",
      ]);
      expect(issuesOf(base({ healthPath: "/m", metricsPath: "/m" }))).to.deep.equal([
        "config: the built-in endpoint path /m is used twice",
      ]);
    });
  });

  describe("exact", () => {
    it("is offered exactly when a relayer key can settle, or with a facilitator URL", () => {
      expect(parse(base(), { ...ENV, [RELAYER_KEY_ENV]: RELAYER_KEY }).exact).to.deep.equal({});
      expect(parse(base(), ENV).exact).to.equal(null);
      expect(parse(base({ exact: false }), { ...ENV, [RELAYER_KEY_ENV]: RELAYER_KEY }).exact).to.equal(null);
      expect(parse(base({ exact: { facilitatorUrl: "https://x402.example/api/" } }), ENV).exact).to.deep.equal({
        facilitatorUrl: "https://x402.example/api",
      });
    });

    it("refuses an explicit exact section that nothing could settle, and a bad URL", () => {
      expect(issuesOf(base({ exact: {} }))).to.deep.equal([
        "config.exact: exact payments are settled with PAYCHAN_RELAYER_PRIVATE_KEY: set it, or give a facilitatorUrl",
      ]);
      expect(issuesOf(base({ exact: { facilitatorUrl: "ftp://x" } }))).to.deep.equal([
        'config.exact.facilitatorUrl: "ftp://x" must use http:// or https://',
      ]);
    });
  });

  describe("loadConfig", () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), "paychan-config-"))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it("resolves the database next to the file and names the file in errors", () => {
      const file = path.join(dir, "paychan.json");
      writeFileSync(file, JSON.stringify(base({ database: "db.sqlite" })));
      expect(loadConfig(file, ENV).database.path).to.equal(path.join(dir, "db.sqlite"));

      writeFileSync(file, "{ not json");
      expect(() => loadConfig(file, ENV))
        .to.throw(ConfigError)
        .with.property("message")
        .that.includes(file)
        .and.includes("not valid JSON");
    });

    it("validates the shipped example file", () => {
      const example = path.join(__dirname, "..", "..", "paychan.config.example.json");
      const config = loadConfig(example, { ...ENV, BASE_SEPOLIA_RPC_URL: "https://rpc.example" });
      expect(config.routes["POST /llm/complete"]).to.deep.include({ pricing: "upto", price: "50000" });
      expect(config.network.name).to.equal("base-sepolia");
    });
  });
  describe("values of the wrong kind", () => {
    it("names what each field takes, and reports the branch a value was meant for", () => {
      const issues = issuesOf(
        base({
          listen: "0.0.0.0:8402",
          token: "0x123",
          routes: {
            "GET /a": { price: "$0.0000001" },
            "GET /b": -1,
            "GET /c": 1.5,
            "GET /d": { price: 5, x: 1, y: 2 },
          },
          minDeposit: "79228162514264337593543950336",
          fromBlock: 1.5,
          database: 5,
          relay: "yes",
          settler: 3,
        }),
      );
      expect(issues).to.deep.equal([
        `config.listen: must be an object like { "host": "127.0.0.1", "port": 8402 }, got "0.0.0.0:8402"`,
        `config.token: "0x123" is not a 0x-prefixed 20-byte hex address`,
        `config.routes['GET /a'].price: price "$0.0000001" has more than the token's 6 decimals`,
        `config.routes['GET /b']: price -1 must be a whole number of atomic units, or a string like "$0.001"`,
        `config.routes['GET /c']: price 1.5 must be a whole number of atomic units, or a string like "$0.001"`,
        `config.routes['GET /d']: unknown keys "x", "y" (known: price, pricing, description, meter)`,
        `config.minDeposit: amount "79228162514264337593543950336" exceeds the largest channel amount (2^96 - 1 atomic units)`,
        `config.fromBlock: must be a block number or "latest", got 1.5`,
        `config.database: must be a path or an object { "path", "durable", "fsync", "url", "leaseMs" }, got 5`,
        `config.relay: must be an object like { "path": "/paychan/relay" } or false, got "yes"`,
        "config.settler: must be an object, got 3",
      ]);
    });

    it("checks the RPC URL from the environment only when the file has none", () => {
      const raw = base({ network: "base-sepolia" });
      delete raw.token;
      expect(issuesOf(raw, { ...ENV, BASE_SEPOLIA_RPC_URL: "nope" })).to.deep.equal([
        `environment BASE_SEPOLIA_RPC_URL: "nope" is not a valid URL`,
      ]);
      const config = parse({ ...raw, rpcUrl: "https://rpc.example" }, { ...ENV, BASE_SEPOLIA_RPC_URL: "nope" });
      expect(config.rpcUrl).to.equal("https://rpc.example/");
    });

    it("accepts a network by its CAIP-2 id", () => {
      expect(parse(base({ network: "eip155:31337" })).network.name).to.equal("localhost");
    });
  });

  describe("the settler section", () => {
    const SETTLE_BASE = base({ minWithdrawDelay: 3600, database: { path: "settler.db" } });
    const SETTLER_KEYS = [
      "minUnclaimed",
      "maxAgeSec",
      "maxBatchSize",
      "maxGasPriceGwei",
      "intervalSec",
      "replaceAfterMs",
      "feeBumpPercent",
      "sendTimeoutMs",
      "watch",
    ];

    it("is validated by the server too, so a typo is found whichever command reads the file", () => {
      expect(issuesOf(base({ settler: { maxBatchSize: 0, batchSize: 10 } }))).to.deep.equal([
        "config.settler.maxBatchSize: 0 is outside [1, 1000]",
        `config.settler: unknown key "batchSize" (known: ${SETTLER_KEYS.join(", ")})`,
      ]);
    });

    it("reads the server's file; without a settler section every setting takes its default", () => {
      const config = parseSettleConfig(SETTLE_BASE, {
        env: { [SETTLER_KEY_ENV]: SETTLER_KEY },
        baseDir: "/srv/paychan",
      });
      const settlerAddress = privateKeyToAccount(SETTLER_KEY).address;
      expect(config.sender).to.equal(settlerAddress);
      expect(config.senderKey).to.equal(SETTLER_KEY);
      // No payee key: the settler's own address is the payee.
      expect(config.server.payee).to.equal(settlerAddress);
      expect(config.server.database.path).to.equal("/srv/paychan/settler.db");
      expect(config.server.contract).to.equal(CONTRACT);
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
          ...SETTLE_BASE,
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
        { ...SETTLE_BASE, settler: { minUnclaimed: "1234", maxGasPriceGwei: "2" } },
        { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
      ).settler.policy;
      expect(atomic).to.deep.include({ minUnclaimed: 1234n, maxGasPriceWei: 2_000_000_000n });
    });

    it("falls back to the payee key, and follows PAYCHAN_PAYEE_ADDRESS when set", () => {
      const payee = privateKeyToAccount(PAYEE_KEY).address;
      const fallback = parseSettleConfig(SETTLE_BASE, { env: { [PAYEE_KEY_ENV]: PAYEE_KEY } });
      expect(fallback.sender).to.equal(payee);
      expect(fallback.server.payee).to.equal(payee);
      const both = parseSettleConfig(SETTLE_BASE, {
        env: { [PAYEE_KEY_ENV]: PAYEE_KEY, [SETTLER_KEY_ENV]: SETTLER_KEY },
      });
      expect(both.sender).to.equal(privateKeyToAccount(SETTLER_KEY).address);
      expect(both.server.payee).to.equal(payee);
      const payeeAddress = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
      const other = parseSettleConfig(SETTLE_BASE, {
        env: { [SETTLER_KEY_ENV]: SETTLER_KEY, [PAYEE_ADDRESS_ENV]: payeeAddress },
      });
      expect(other.server.payee).to.equal(payeeAddress);
    });

    it("ignores the relay section and its key, which only the server uses", () => {
      const config = parseSettleConfig(
        { ...SETTLE_BASE, relay: { path: "/relay" } },
        { env: { [SETTLER_KEY_ENV]: SETTLER_KEY, [RELAYER_KEY_ENV]: "not a key" } },
      );
      expect(config.server.relay).to.equal(null);
    });

    it("lists every problem at once: keys, settler settings and the server's own", () => {
      expect(issuesThrownBy(() => parseSettleConfig(SETTLE_BASE, { env: {} }))).to.deep.equal([
        `environment ${SETTLER_KEY_ENV}: required (or ${PAYEE_KEY_ENV}); the key that sends claims`,
      ]);
      expect(
        issuesThrownBy(() => parseSettleConfig(SETTLE_BASE, { env: { [SETTLER_KEY_ENV]: "0x1234" } })),
      ).to.deep.equal([
        `environment ${SETTLER_KEY_ENV}: must be a 32-byte hex private key (64 hex digits, optionally 0x-prefixed)`,
      ]);
      const issues = issuesThrownBy(() =>
        parseSettleConfig(
          {
            ...SETTLE_BASE,
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
      expect(issues).to.deep.equal([
        `config.contract: "0x123" is not a 0x-prefixed 20-byte hex address`,
        `config.settler.minUnclaimed: amount "$0.0000001" has more than the token's 6 decimals`,
        "config.settler.maxAgeSec: 0 is outside [1, 31536000]",
        "config.settler.maxBatchSize: 5000 is outside [1, 1000]",
        "config.settler.maxGasPriceGwei: must be a positive number of gwei, got 0",
        "config.settler.intervalSec: must be a whole number of seconds, got 1.5",
        "config.settler.feeBumpPercent: 5 is outside [10, 1000]",
        "config.settler.watch: must be true or false",
        `config.settler: unknown key "batchSize" (known: ${SETTLER_KEYS.join(", ")})`,
      ]);
      expect(issues.join("\n")).to.not.include(SETTLER_KEY.slice(2));
    });

    it("refuses a schedule too slow for the shortest withdraw delay, alongside other problems", () => {
      const issues = issuesThrownBy(() =>
        parseSettleConfig(
          { ...SETTLE_BASE, minWithdrawDelay: 900, listen: { port: -1 }, settler: { intervalSec: 301 } },
          { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
        ),
      );
      expect(issues).to.deep.equal([
        "config.listen.port: -1 is outside [0, 65535]",
        "config.settler.intervalSec: 301 s leaves too little of the 900 s minimum withdraw delay " +
          "(config.minWithdrawDelay) to claim an exiting channel; use at most a third of it",
      ]);
      const ok = parseSettleConfig(
        { ...SETTLE_BASE, minWithdrawDelay: 900, settler: { intervalSec: 300 } },
        { env: { [SETTLER_KEY_ENV]: SETTLER_KEY } },
      );
      expect(ok.settler.intervalSec).to.equal(300);
    });

    it("loads a file, resolving the database next to it, and reports unreadable files", () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-settle-config-"));
      try {
        const file = path.join(dir, "paychan.config.json");
        writeFileSync(file, JSON.stringify(SETTLE_BASE));
        const config = loadSettleConfig(file, { [SETTLER_KEY_ENV]: SETTLER_KEY });
        expect(config.server.database.path).to.equal(path.join(dir, "settler.db"));
        expect(config.server.source).to.equal(file);
        writeFileSync(file, "{ not json");
        expect(issuesThrownBy(() => loadSettleConfig(file, { [SETTLER_KEY_ENV]: SETTLER_KEY }))[0]).to.match(
          /^not valid JSON/,
        );
        expect(issuesThrownBy(() => loadSettleConfig(path.join(dir, "missing.json"), {}))[0]).to.match(
          /file not found$/,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
