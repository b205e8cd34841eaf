/**
 * Finds the browser's wallets: EIP-6963 (each wallet announces itself with a name and an icon, so
 * several can coexist), falling back to the legacy `window.ethereum` when none announces.
 */

/** An EIP-1193 provider: the one method paychan uses. */
export interface Eip1193Provider {
  request(args: { readonly method: string; readonly params?: unknown }): Promise<unknown>;
}

/** EIP-6963 `EIP6963ProviderInfo`. */
export interface WalletInfo {
  readonly uuid: string;
  readonly name: string;
  /** A data: URI (EIP-6963 requires it), or "" for the `window.ethereum` fallback. */
  readonly icon: string;
  readonly rdns: string;
}

export interface Wallet {
  readonly info: WalletInfo;
  readonly provider: Eip1193Provider;
}

interface AnnounceEvent extends Event {
  readonly detail?: { readonly info?: WalletInfo; readonly provider?: Eip1193Provider };
}

/**
 * Asks every installed wallet to announce itself and resolves after `waitMs` with those that did
 * (wallets answer the request synchronously; the wait covers those injected late). Later
 * announcements still reach `onLate`.
 */
export function discoverWallets(waitMs: number, onLate?: (wallet: Wallet) => void): Promise<Wallet[]> {
  const found = new Map<string, Wallet>();
  let settled = false;
  window.addEventListener("eip6963:announceProvider", (event: Event) => {
    const { info, provider } = (event as AnnounceEvent).detail ?? {};
    if (!info?.uuid || typeof provider?.request !== "function" || found.has(info.uuid)) return;
    const wallet = { info, provider };
    found.set(info.uuid, wallet);
    if (settled) onLate?.(wallet);
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  return new Promise((resolve) =>
    setTimeout(() => {
      settled = true;
      const wallets = [...found.values()];
      const legacy = (window as unknown as { ethereum?: Eip1193Provider }).ethereum;
      if (wallets.length === 0 && typeof legacy?.request === "function") {
        wallets.push({
          info: { uuid: "window.ethereum", name: "Browser wallet", icon: "", rdns: "" },
          provider: legacy,
        });
      }
      resolve(wallets);
    }, waitMs),
  );
}
