import { expect } from "chai";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicClient, http, type PublicClient } from "viem";
import { hardhat } from "viem/chains";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { x402Channel } from "../../src/server/x402/x402Channel";
import { loadConfig, PAYEE_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";
import { ASSET, CONTRACT, PAYEE_KEY } from "../helpers/memoryStore";
import { requirePg, testSchema, type TestSchema } from "../helpers/pgSchema";

/*
 * The x402 plug-in reserves charges in one process's engine, and quoted tokens are charged on the
 * single-instance path only; a store several instances share honours neither, so on PostgreSQL
 * both are refused before any request is taken.
 */
describe("x402 plug-in and quoted tokens on a store several instances share", function () {
  let dir: string;
  let schema: TestSchema | undefined;
  const servers: PaymentServer[] = [];

  async function serverOn(
    database: Record<string, unknown>,
    more: Record<string, unknown> = {},
  ): Promise<PaymentServer> {
    const file = path.join(dir, `paychan-${servers.length}.json`);
    writeFileSync(
      file,
      JSON.stringify({
        upstream: "http://127.0.0.1:9",
        network: "localhost",
        rpcUrl: "http://127.0.0.1:9",
        contract: CONTRACT,
        ...("tokens" in more ? {} : { token: { address: ASSET, decimals: 6, name: "USD Coin", version: "2" } }),
        routes: { "GET /paid": "$0.001" },
        database,
        ...more,
      }),
    );
    // Never started: no RPC call is made.
    const publicClient = createPublicClient({ chain: hardhat, transport: http("http://127.0.0.1:9") }) as PublicClient;
    const server = await createPaymentServer(loadConfig(file, { [PAYEE_KEY_ENV]: PAYEE_KEY }), {
      publicClient,
      logger: createLogger({ level: "silent" }),
    });
    servers.push(server);
    return server;
  }

  beforeEach(function () {
    schema = testSchema(requirePg(this, "the x402 plug-in on PostgreSQL"));
    dir = mkdtempSync(path.join(os.tmpdir(), "paychan-x402-shared-"));
  });

  afterEach(async () => {
    for (const server of servers.splice(0)) await server.stop();
    await schema?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("refuses to create the channel scheme on PostgreSQL and creates it on the server's own SQLite file", async () => {
    const shared = await serverOn({ url: schema!.url });
    expect(() => x402Channel(shared)).to.throw(/store of its own \(SQLite\).*docs\/scaling\.md/);
    const own = await serverOn({ path: path.join(dir, "own.db") });
    expect(x402Channel(own).scheme.scheme).to.equal("channel");
  });

  it("refuses several tokens on PostgreSQL, with what to change", async () => {
    const tokens = [
      { address: ASSET, symbol: "USDC", decimals: 6, name: "USD Coin", version: "2", rate: "1" },
      { address: CONTRACT, symbol: "EURC", decimals: 6, name: "EURC", version: "2", rate: "1.08" },
    ];
    let error: unknown;
    try {
      await serverOn({ url: schema!.url }, { tokens });
    } catch (e) {
      error = e;
    }
    expect(String(error)).to.match(/several tokens need the SQLite store.*remove `tokens` or `database.url`/);
    const own = await serverOn({ path: path.join(dir, "tokens.db") }, { tokens });
    expect(own.gate.offer).to.be.a("function");
  });
});
