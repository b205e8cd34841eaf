import { ChainSetupError, rpcFix, type DeploymentTarget } from "../chain/setupError";
import { displayUrl, failedUrl, transportFailure } from "../chain/rpcFailure";

/**
 * Failures told to a human: what failed (which URL, which network) and how to fix it, in one line
 * each, never a stack trace. `PAYCHAN_DEBUG=1` adds the stack, for a bug report. Shared by the
 * server, the settler and the CLI.
 */

/** Environment variable that adds the stack trace to a reported failure. */
export const DEBUG_ENV = "PAYCHAN_DEBUG";

/** A failure for a human. */
export interface Failure {
  readonly message: string;
  /** What to do about it, when something can be done. */
  readonly fix?: string;
}

/** What was being done when the failure happened, to name the endpoint and the setting to change. */
export interface FailureContext {
  /** The JSON-RPC endpoint in use, its network, and where it is configured ("config.rpcUrl", "--rpc"). */
  readonly rpc?: Pick<DeploymentTarget, "network" | "rpcUrl" | "rpcSetting">;
  /** The HTTP URL being requested, when it is not an RPC call (a paid resource, a relay). */
  readonly url?: string;
}

/** An error's one-line text (viem's short message rather than its multi-line details). */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return ((error as { shortMessage?: string }).shortMessage ?? error.message).split("\n")[0];
}

/** What failed and how to fix it. */
export function describeFailure(error: unknown, context: FailureContext = {}): Failure {
  if (error instanceof ChainSetupError) return { message: error.message, fix: error.fix };
  // Errors that carry their own fix (a relay's answer, say).
  const { fix } = error as { fix?: unknown };
  if (error instanceof Error && typeof fix === "string") return { message: errorText(error), fix };
  const transport = transportFailure(error);
  if (transport !== undefined) {
    // viem's transport errors name the RPC URL; a bare fetch failure is the HTTP URL requested.
    const rpcUrl = failedUrl(error);
    const { rpc } = context;
    if (rpcUrl !== undefined || (context.url === undefined && rpc !== undefined)) {
      const url = rpcUrl ?? rpc!.rpcUrl;
      const network = rpc ? `${rpc.network.name} ` : "";
      return {
        message: `cannot reach the ${network}JSON-RPC endpoint ${displayUrl(url)}: ${transport}`,
        fix: rpc
          ? rpcFix({ ...rpc, rpcUrl: url })
          : "check the RPC URL (--rpc, or the network's RPC variable) and that the node is reachable",
      };
    }
    return {
      message: `cannot reach ${context.url ?? "the server"}: ${transport}`,
      fix: "check the URL, and that the server runs and is reachable from here",
    };
  }
  const { code, address, port } = error as { code?: unknown; address?: unknown; port?: unknown };
  if (code === "EADDRINUSE" || code === "EACCES") {
    return {
      message: `cannot listen on ${String(address)}:${String(port)}: ${code === "EADDRINUSE" ? "the address is in use" : "permission denied"}`,
      fix: "stop the process using that port, or set config.listen.port (and listen.host) to a free one",
    };
  }
  return { message: errorText(error) };
}

/**
 * The lines to print for a failure: `<prefix>: <message>`, then `  fix: <fix>` when there is one,
 * then the stack when {@link DEBUG_ENV} is set (or a hint that it shows it, for unknown faults).
 */
export function formatFailure(
  prefix: string,
  error: unknown,
  context: FailureContext = {},
  env: NodeJS.ProcessEnv = process.env,
): string {
  const failure = describeFailure(error, context);
  let text = `${prefix}: ${failure.message}\n`;
  if (failure.fix !== undefined) text += `  fix: ${failure.fix}\n`;
  const debug = env[DEBUG_ENV] !== undefined && env[DEBUG_ENV] !== "" && env[DEBUG_ENV] !== "0";
  if (debug && error instanceof Error && error.stack) text += `${error.stack}\n`;
  else if (failure.fix === undefined) text += `  (${DEBUG_ENV}=1 shows where it failed)\n`;
  return text;
}
