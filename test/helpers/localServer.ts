import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import type { Address, Hex } from "viem";
import {
  decodeHeader,
  PAYMENT_REQUIRED_HEADER,
  type ChannelOffer,
  type PaymentRequired,
} from "../../src/protocol/headers";
import { createPaymentServer, type PaymentServer } from "../../src/server/app";
import { loadConfig, PAYEE_KEY_ENV, RELAYER_KEY_ENV } from "../../src/shared/config";
import { createLogger } from "../../src/shared/log";

/**
 * A paychan server configured for a local `hardhat node`, the way the end-to-end tests run it:
 * a configuration file in a temporary directory, a small JSON upstream, the real server with its
 * gasless relay, listening on a free port.
 */

/** The chain a configuration points at. */
export interface LocalChain {
  readonly rpcUrl: string;
  readonly contract: Address;
  readonly token: Address;
}

/**
 * Writes a server configuration for `chain` to `file`: a $1 minimum deposit, a one-hour minimum
 * withdraw delay, fast polling, SQLite next to the file; `settings` adds or overrides fields.
 */
export function writeLocalConfig(file: string, chain: LocalChain, settings: Record<string, unknown>): string {
  writeFileSync(
    file,
    JSON.stringify({
      upstream: "http://127.0.0.1:9",
      listen: { host: "127.0.0.1", port: 0 },
      network: "localhost",
      rpcUrl: chain.rpcUrl,
      contract: chain.contract,
      token: { address: chain.token, decimals: 6, name: "USD Coin", version: "2" },
      minDeposit: "$1",
      minWithdrawDelay: 3600,
      pollIntervalMs: 200,
      database: { path: `${path.basename(file, ".json")}.db`, durable: true },
      ...settings,
    }),
  );
  return file;
}

/** A running local server and what a test needs from it. */
export interface LocalServer {
  readonly server: PaymentServer;
  readonly baseUrl: string;
  /** The temporary directory holding the configuration and the database. */
  readonly dir: string;
  /** The offer of `GET <baseUrl><offerPath>`. */
  readonly offer: ChannelOffer;
  /** Stops the server and the upstream, and removes the directory. */
  stop(): Promise<void>;
}

/**
 * Starts the server for `chain` in front of an upstream answering `{"ok": true, "path": ...}`,
 * with the payee and relayer keys given, and reads the offer of `offerPath` (a priced route).
 */
export async function startLocalServer(
  chain: LocalChain,
  keys: { readonly payee: Hex; readonly relayer: Hex },
  settings: Record<string, unknown> & { readonly routes: Record<string, unknown> },
  offerPath: string,
): Promise<LocalServer> {
  const upstream = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-local-"));
  const stopUpstream = async () => {
    upstream.closeAllConnections();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  let server: PaymentServer | undefined;
  try {
    const file = writeLocalConfig(path.join(dir, "paychan.config.json"), chain, {
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      ...settings,
    });
    const env = { ...process.env, [PAYEE_KEY_ENV]: keys.payee, [RELAYER_KEY_ENV]: keys.relayer };
    server = await createPaymentServer(loadConfig(file, env), { logger: createLogger({ level: "warn" }) });
    const running = server;
    const baseUrl = `http://127.0.0.1:${(await running.start()).port}`;
    const answer = await fetch(`${baseUrl}${offerPath}`);
    await answer.arrayBuffer();
    const offer = decodeHeader<PaymentRequired>(answer.headers.get(PAYMENT_REQUIRED_HEADER)!).accepts[0];
    return {
      server: running,
      baseUrl,
      dir,
      offer,
      stop: async () => {
        await running.stop().catch(() => undefined);
        await stopUpstream();
      },
    };
  } catch (error) {
    await server?.stop().catch(() => undefined);
    await stopUpstream();
    throw error;
  }
}
