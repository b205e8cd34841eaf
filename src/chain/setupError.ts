import type { Address } from "viem";
import type { NetworkInfo } from "./networks";
import { displayUrl } from "./rpcFailure";

/**
 * The error of a chain set-up problem found at start (see checkDeployment.ts), and the advice
 * shared by every place that reports an unreachable RPC endpoint. Kept apart from the check
 * itself so that reporting a failure loads nothing heavier than this.
 */

/** A set-up problem found at start: what is wrong, and how to fix it. */
export class ChainSetupError extends Error {
  constructor(
    message: string,
    /** What to change, in one line. */
    readonly fix: string,
  ) {
    super(message);
    this.name = "ChainSetupError";
  }
}

/** What checkDeployment checks against. */
export interface DeploymentTarget {
  readonly network: NetworkInfo;
  /** The endpoint `client` talks to, for messages. */
  readonly rpcUrl: string;
  readonly contract: Address;
  /** Where the contract address is configured, for the fix ("config.contract"). */
  readonly contractSetting?: string;
  /** Where the RPC URL is configured, for the fix ("config.rpcUrl"). */
  readonly rpcSetting?: string;
}

/** How to point at a reachable endpoint of `target`'s network. */
export function rpcFix(target: Pick<DeploymentTarget, "network" | "rpcUrl" | "rpcSetting">): string {
  const setting = `${target.rpcSetting ?? "config.rpcUrl"} (or ${target.network.rpcEnv})`;
  return target.network.local
    ? `start the node (npx hardhat node), or point ${setting} at a running ${target.network.name} node`
    : `check that ${displayUrl(target.rpcUrl)} is up and right, or point ${setting} at a reachable ${target.network.name} JSON-RPC endpoint`;
}
