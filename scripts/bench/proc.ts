import { spawn } from "node:child_process";
import path from "node:path";

/** Helpers shared by the benchmark parts: child processes that are always cleaned up. */

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
/** `-r` module that lets a plain `node` run the TypeScript sources (bin/register.js). */
export const TS_REGISTER = path.join(REPO_ROOT, "bin", "register.js");

export interface ChildOutput {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a command in its own process group (npx → node chains included), echoing nothing, and
 * resolves with its output. The whole group is killed if this process exits first.
 */
export function runChild(command: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ChildOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0", ...env },
    });
    const pgid = child.pid;
    const kill = () => {
      if (pgid !== undefined) {
        try {
          process.kill(-pgid, "SIGKILL");
        } catch {
          // gone
        }
      }
    };
    process.on("exit", kill);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", (error) => {
      process.off("exit", kill);
      reject(error);
    });
    child.on("close", (code) => {
      process.off("exit", kill);
      kill(); // anything the command left behind in its group
      resolve({ code, stdout, stderr });
    });
  });
}

/** The last line of `stdout` parsed as JSON; throws with the output when it is not JSON. */
export function lastJsonLine<T>(what: string, output: ChildOutput): T {
  const lines = output.stdout.trim().split("\n");
  try {
    if (output.code !== 0) throw new Error(`exit code ${output.code}`);
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch (error) {
    throw new Error(`${what} failed (${String(error)}):\n${output.stdout.slice(-4000)}\n${output.stderr.slice(-4000)}`);
  }
}
