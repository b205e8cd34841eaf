import Ajv from "ajv";
import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { NETWORKS } from "../../src/chain/networks";
import {
  CONFIG_ENV,
  ConfigError,
  configJsonSchema,
  parseConfig,
  PAYEE_ADDRESS_ENV,
  PAYEE_KEY_ENV,
  RELAYER_KEY_ENV,
  SETTLER_KEY_ENV,
} from "../../src/shared/config";
import { LOG_LEVEL_ENV } from "../../src/shared/log";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * paychan.config.schema.json and docs/config.md against the zod schema that validates the file:
 * the committed JSON Schema is the generated one, it agrees with the parser, and the reference
 * page documents every field (with its default) and every environment variable, and nothing else.
 */

const ROOT = path.join(__dirname, "..", "..");
const SCHEMA_FILE = path.join(ROOT, "paychan.config.schema.json");
const EXAMPLE_FILE = path.join(ROOT, "paychan.config.example.json");
const CONFIG_MD = path.join(ROOT, "docs", "config.md");

interface JsonSchema {
  readonly type?: string;
  readonly properties?: Record<string, JsonSchema>;
  readonly additionalProperties?: JsonSchema | boolean;
  readonly anyOf?: readonly JsonSchema[];
  readonly items?: JsonSchema;
  readonly default?: unknown;
  readonly description?: string;
}

/** Every field of the schema by its documented path ("listen.port", "routes.*.price"), with its schema. */
function fields(schema: JsonSchema, prefix = ""): Map<string, JsonSchema> {
  const found = new Map<string, JsonSchema>();
  const visit = (node: JsonSchema, at: string) => {
    for (const [key, child] of Object.entries(node.properties ?? {})) {
      const name = at ? `${at}.${key}` : key;
      found.set(name, child);
      visit(child, name);
    }
    if (typeof node.additionalProperties === "object") {
      const name = `${at}.*`;
      found.set(name, node.additionalProperties);
      visit(node.additionalProperties, name);
    }
    for (const branch of node.anyOf ?? []) visit(branch, at);
    // The fields of an array's elements are named "<array>[].<field>".
    if (typeof node.items === "object") visit(node.items, `${at}[]`);
  };
  visit(schema, prefix);
  return found;
}

/** The rows of every markdown table whose first header cell is `first`: first cell (unquoted) → cells. */
function tableRows(markdown: string, first: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  const lines = markdown.split("\n").map((line) => line.trim());
  for (let i = 0; i < lines.length; i++) {
    if (!new RegExp(`^\\|\\s*${first}\\s*\\|`).test(lines[i])) continue;
    for (let j = i + 2; j < lines.length && lines[j].startsWith("|"); j++) {
      const cells = lines[j]
        .replace(/^\||\|$/g, "")
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim());
      const name = /^`([^`]+)`$/.exec(cells[0]);
      if (!name) throw new Error(`the first cell must be one backquoted name: ${lines[j]}`);
      expect(rows.has(name[1]), `${name[1]} is documented twice`).to.equal(false);
      rows.set(name[1], cells);
    }
  }
  return rows;
}

const ENV = { [PAYEE_KEY_ENV]: HARDHAT_KEYS[1] };

/** Whether the parser accepts `raw` (with a payee key, on a local network unless `raw` says otherwise). */
function parserAccepts(raw: unknown): boolean {
  try {
    parseConfig(raw, { env: ENV, baseDir: "/srv/paychan" });
    return true;
  } catch (error) {
    if (error instanceof ConfigError) return false;
    throw error;
  }
}

describe("config schema and reference", () => {
  const generated = configJsonSchema();
  const committed = JSON.parse(readFileSync(SCHEMA_FILE, "utf8")) as unknown;
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(committed as object);

  it("paychan.config.schema.json is the schema generated from the parser's (npm run build:schema)", () => {
    expect(committed, "run `npm run build:schema` and commit paychan.config.schema.json").to.deep.equal(generated);
  });

  it("accepts the example config, which names it in its $schema key", () => {
    const example = JSON.parse(readFileSync(EXAMPLE_FILE, "utf8")) as Record<string, unknown>;
    expect(validate(example), ajv.errorsText(validate.errors)).to.equal(true);
    expect(example.$schema).to.equal("./paychan.config.schema.json");
  });

  it("agrees with the parser on what a file may contain", () => {
    const valid = {
      upstream: "http://127.0.0.1:3000",
      network: "localhost",
      contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
      token: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
      routes: { "GET /weather": "$0.001", "POST /llm": { price: 50_000, pricing: "upto" }, "GET /": null },
    };
    const cases: Record<string, unknown>[] = [
      valid,
      { ...valid, listen: { host: "0.0.0.0", port: 0 }, database: ":memory:", relay: false, healthPath: null },
      { ...valid, fromBlock: "latest", settler: { minUnclaimed: 5000, maxGasPriceGwei: "0.5", watch: false } },
      { ...valid, token: { address: valid.token, decimals: 18, name: "Token", version: "1" }, fromBlock: "123" },
      { ...valid, rotues: {} },
      { ...valid, listen: { port: 70_000 } },
      { ...valid, listen: { port: 1.5 } },
      { ...valid, network: "mainnet" },
      { ...valid, contract: "0x123" },
      { ...valid, routes: { "GET /x": true } },
      { ...valid, routes: { "GET /x": { pricing: "upto" } } },
      { ...valid, routes: { "GET /x": { price: "$1", pricing: "maybe" } } },
      { ...valid, routes: {} },
      { ...valid, minDeposit: "one dollar" },
      { ...valid, database: { path: "x.db", fsync: "always" } },
      { ...valid, healthPath: "healthz" },
      { ...valid, relay: "yes" },
      { ...valid, fromBlock: -1 },
      { ...valid, settler: { batchSize: 10 } },
      { ...valid, settler: { maxGasPriceGwei: -1 } },
      { ...valid, settler: { watch: "yes" } },
      { ...valid, upstream: undefined },
      {
        ...valid,
        token: undefined,
        tokens: [
          { address: valid.token, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" },
          {
            address: "0x2222222222222222222222222222222222222222",
            symbol: "EURC",
            decimals: 6,
            name: "EURC",
            version: "2",
            rate: { feed: "0x1111111111111111111111111111111111111111", maxAgeSec: 600 },
            lockRate: "channel",
          },
        ],
      },
      { ...valid, token: undefined, tokens: [{ address: valid.token, symbol: "USDC", decimals: 6, rate: "1" }] },
      { ...valid, token: undefined, tokens: [] },
      {
        ...valid,
        token: undefined,
        tokens: [{ address: valid.token, symbol: "USDC", decimals: 6, name: "U", version: "2", rate: { feed: 1 } }],
      },
    ];
    for (const raw of cases) {
      const accepted = parserAccepts(raw);
      expect(validate(raw), `${JSON.stringify(raw)}: ${ajv.errorsText(validate.errors)}`).to.equal(accepted);
    }
  });

  describe("docs/config.md", () => {
    const markdown = readFileSync(CONFIG_MD, "utf8");
    const documented = tableRows(markdown, "field");
    const schemaFields = fields(generated as JsonSchema);

    it("documents every field of the schema, and no other", () => {
      expect([...documented.keys()]).to.have.members([...schemaFields.keys()]);
    });

    it("gives each field a type, its default as the schema has it, and a meaning", () => {
      for (const [name, schema] of schemaFields) {
        const [, type, fallback, meaning] = documented.get(name) ?? [];
        expect(type, `${name}: type`).to.match(/\S/);
        expect(meaning?.length ?? 0, `${name}: meaning`).to.be.greaterThan(15);
        expect(schema.description, `${name}: description in the schema`).to.match(/\S/);
        const value = schema.default;
        if (value === undefined || typeof value === "object") continue;
        expect(fallback, `${name}: default`).to.include(`\`${JSON.stringify(value)}\``);
      }
    });

    it("documents every environment variable the configuration reads", () => {
      const variables = tableRows(markdown, "variable");
      const read = [
        CONFIG_ENV,
        PAYEE_KEY_ENV,
        PAYEE_ADDRESS_ENV,
        RELAYER_KEY_ENV,
        SETTLER_KEY_ENV,
        LOG_LEVEL_ENV,
        ...Object.values(NETWORKS).map((network) => network.rpcEnv),
      ];
      expect([...variables.keys()]).to.include.members(read);
    });
  });
});
