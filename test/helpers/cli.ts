import { execFile } from "node:child_process";
import path from "node:path";

/** What a `paychan` process did. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const REPO_ROOT = path.resolve(__dirname, "..", "..");

/**
 * The variables a developer's shell may hold that would change what a command does: cleared, so a
 * test gives each command exactly the keys and endpoints it means to.
 */
const CLEARED = [
  "PAYCHAN_PAYER_PRIVATE_KEY",
  "PAYCHAN_KEYSTORE_PASSWORD",
  "PAYCHAN_DEBUG",
  "DEPLOYER_PRIVATE_KEY",
  "LOCALHOST_RPC_URL",
  "BASE_SEPOLIA_RPC_URL",
];

/** Runs `paychan <args>` (bin/paychan.js) as a separate process, as a user would, with `env` added. */
export function runPaychan(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const base: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CLEARED) delete base[name];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(REPO_ROOT, "bin", "paychan.js"), ...args],
      { env: { ...base, ...env }, timeout: 60_000 },
      (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}
