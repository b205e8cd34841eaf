import {
  getAddress,
  parseEventLogs,
  type Account,
  type Address,
  type Hex,
  type PublicClient,
  type WalletClient,
} from "viem";
import type { LocalAccount } from "viem/accounts";
import { paymentChannelsAbi } from "../chain/abi";
import type { ChannelOffer } from "../protocol/headers";
import { ChannelOperationError } from "./errors";

/**
 * What the client operations need to know about a server's channel terms; {@link termsFromOffer}
 * reads them from a 402 offer.
 */
export interface ChannelTerms {
  readonly chainId: number;
  /** The PaymentChannels contract. */
  readonly contract: Address;
  /** The token (USDC). */
  readonly token: Address;
  readonly payee: Address;
  /** The token's EIP-712 domain name and version (EIP-2612 permits, EIP-3009 authorizations). */
  readonly tokenName: string;
  readonly tokenVersion: string;
  /** Absolute URL of the server's gasless relay base (`<relay>/open`, `<relay>/topup`), if offered. */
  readonly relayUrl?: string;
  /** Smallest withdraw delay the server accepts, seconds. */
  readonly minWithdrawDelay?: number;
  /** Smallest deposit the server accepts, atomic units. */
  readonly minDeposit?: bigint;
}

/** Something that signs EIP-712 typed data: a viem local account (private key, mnemonic, HD). */
export type TypedDataSigner = Pick<LocalAccount, "address" | "signTypedData">;

/** A wallet client with an account, for operations that send transactions. */
export type SendingWallet = WalletClient & { readonly account: Account };

/** The chain id named by a CAIP-2 `eip155:<id>` network. */
export function chainIdOf(network: string): number {
  const match = /^eip155:(\d+)$/.exec(network);
  if (!match) throw new Error(`unsupported network "${network}" (expected eip155:<chain id>)`);
  return Number(match[1]);
}

/**
 * Channel terms from a 402 offer. `resourceUrl` (the URL that answered 402) resolves the relay
 * path to an absolute URL.
 */
export function termsFromOffer(offer: ChannelOffer, resourceUrl: string): ChannelTerms {
  return {
    chainId: chainIdOf(offer.network),
    contract: getAddress(offer.extra.contract),
    token: getAddress(offer.asset),
    payee: getAddress(offer.payTo),
    tokenName: offer.extra.name,
    tokenVersion: offer.extra.version,
    ...(offer.extra.relay ? { relayUrl: new URL(offer.extra.relay, resourceUrl).toString() } : {}),
    minWithdrawDelay: offer.extra.minWithdrawDelay,
    minDeposit: BigInt(offer.extra.minDeposit),
  };
}

/** Sends one contract call from `wallet` and waits for a successful receipt. */
export async function sendContract(
  publicClient: PublicClient,
  wallet: SendingWallet,
  address: Address,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  abi: any,
  functionName: string,
  args: readonly unknown[],
) {
  const hash = await wallet.writeContract({
    address,
    abi,
    functionName,
    args,
    account: wallet.account,
    chain: wallet.chain ?? null,
  } as Parameters<WalletClient["writeContract"]>[0]);
  const receipt = await publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") {
    throw new ChannelOperationError(`${functionName} reverted (tx ${hash})`, "reverted");
  }
  return receipt;
}

/** The ChannelOpened event of a receipt from `contract`. */
export function openedChannelId(contract: Address, logs: Parameters<typeof parseEventLogs>[0]["logs"]): bigint {
  const event = parseEventLogs({ abi: paymentChannelsAbi, eventName: "ChannelOpened", logs }).find(
    (log) => log.address.toLowerCase() === contract.toLowerCase(),
  );
  if (!event) throw new ChannelOperationError("the transaction emitted no ChannelOpened event", "no_event");
  return event.args.channelId;
}

/** An EIP-3009 / EIP-2612 signature split into v, r, s. */
export function splitSignature(signature: Hex): { v: number; r: Hex; s: Hex } {
  const r = `0x${signature.slice(2, 66)}` as Hex;
  const s = `0x${signature.slice(66, 130)}` as Hex;
  let v = parseInt(signature.slice(130, 132), 16);
  if (v < 27) v += 27;
  return { v, r, s };
}

/** POSTs a JSON body to the relay and returns its answer, or throws its error. */
export async function postRelay<T>(fetchImpl: typeof fetch, url: string, body: unknown): Promise<T> {
  const response = await fetchImpl(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: { error?: string; message?: string; fix?: string } & Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    // Not JSON: reported below.
  }
  if (response.status !== 200) {
    throw new ChannelOperationError(
      `relay ${url} answered ${response.status} ${parsed.error ?? ""}: ${parsed.message ?? text.slice(0, 200)}`,
      parsed.error ?? "relay_error",
      response.status,
      typeof parsed.fix === "string" ? parsed.fix : undefined,
    );
  }
  return parsed as T;
}
