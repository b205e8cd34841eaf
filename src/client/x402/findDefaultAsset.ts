import type { DefaultAsset, FindDefaultAsset } from "@x402/core/types";
import { NETWORKS } from "../../chain/networks";

/** A USD stablecoin x402 should treat as a default asset (spend caps in dollars) on one network. */
export interface DefaultAssetEntry extends DefaultAsset {
  /** CAIP-2 network id, e.g. "eip155:84532". */
  readonly network: string;
}

/** Circle's USDC on every network paychan knows that has it (local networks have a mock instead). */
const USDC: readonly DefaultAssetEntry[] = Object.values(NETWORKS).flatMap((n) =>
  n.usdc ? [{ network: n.caip2, asset: n.usdc, decimals: 6, symbol: "USDC" }] : [],
);

/**
 * x402's reverse lookup for spend controls: which USD asset an offer's `asset` is on its network.
 * x402Client allows only assets this recognizes (unless `spendControls.allowedAssets` says
 * otherwise) and converts its dollar cap, `maxAmountPerPayment`, with their decimals. Recognized:
 * Circle's USDC on paychan's networks, plus `extra` (a local mock USDC, say).
 */
export function findDefaultAssetIn(extra: readonly DefaultAssetEntry[] = []): FindDefaultAsset {
  const table = [...USDC, ...extra];
  return (asset, network) => {
    const entry = table.find((e) => e.network === network && e.asset.toLowerCase() === asset.toLowerCase());
    return entry && { asset: entry.asset, decimals: entry.decimals, symbol: entry.symbol };
  };
}
