import type { BrowserContext } from "playwright-core";
import type { Address } from "viem";

/**
 * A browser wallet for tests: an EIP-1193 provider injected into every page before its scripts
 * run and announced through EIP-6963, backed by an account the `hardhat node` holds unlocked. Like
 * a real extension, the page only talks to it through the provider object: requests cross to
 * Node (a Playwright binding, standing in for the extension's messaging) and are answered there,
 * so the page itself never connects to the node and its CSP has nothing to allow for it.
 *
 * It approves everything at once and counts what a person would have been asked: connecting
 * (eth_requestAccounts) and signing (eth_signTypedData_v4).
 */

export interface InjectedWallet {
  readonly address: Address;
  /** Requests that would show the wallet's confirmation to a person, by method. */
  readonly prompts: Map<string, number>;
  /** Every request, by method. */
  readonly requests: Map<string, number>;
}

const PROMPTING = new Set([
  "eth_requestAccounts",
  "eth_signTypedData_v4",
  "wallet_switchEthereumChain",
  "eth_sendTransaction",
]);

/** What the page gets: the provider and its EIP-6963 announcement (runs in the page, before any page script). */
function pageScript(): void {
  const call = (window as unknown as { __testWallet: (method: string, params: string) => Promise<string> })
    .__testWallet;
  const provider = {
    isTestWallet: true,
    async request({ method, params }: { method: string; params?: unknown }): Promise<unknown> {
      const answer = JSON.parse(await call(method, JSON.stringify(params ?? []))) as {
        result?: unknown;
        error?: { code: number; message: string };
      };
      if (answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
      return answer.result;
    },
    on() {},
    removeListener() {},
  };
  const icon =
    "data:image/svg+xml;base64," +
    btoa(
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="15" fill="#f6c343"/></svg>',
    );
  const detail = Object.freeze({
    info: Object.freeze({
      uuid: crypto.randomUUID(),
      name: "Hardhat Test Wallet",
      icon,
      rdns: "org.paychan.testwallet",
    }),
    provider,
  });
  const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
}

/** Injects the wallet of `address` (unlocked on the node at `rpcUrl`) into every page of `context`. */
export async function injectWallet(context: BrowserContext, rpcUrl: string, address: Address): Promise<InjectedWallet> {
  const wallet: InjectedWallet = { address, prompts: new Map(), requests: new Map() };
  const bump = (map: Map<string, number>, method: string) => map.set(method, (map.get(method) ?? 0) + 1);
  let id = 0;
  await context.exposeFunction("__testWallet", async (method: string, paramsJson: string): Promise<string> => {
    bump(wallet.requests, method);
    if (PROMPTING.has(method)) bump(wallet.prompts, method);
    if (method === "eth_requestAccounts" || method === "eth_accounts") return JSON.stringify({ result: [address] });
    const params = JSON.parse(paramsJson) as unknown[];
    if (method === "eth_signTypedData_v4" && String(params[0]).toLowerCase() !== address.toLowerCase()) {
      return JSON.stringify({ error: { code: 4100, message: "not an account of this wallet" } });
    }
    const response = await fetch(rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params }),
    });
    const body = (await response.json()) as { result?: unknown; error?: { code: number; message: string } };
    return JSON.stringify(body.error ? { error: body.error } : { result: body.result });
  });
  await context.addInitScript(pageScript);
  return wallet;
}
