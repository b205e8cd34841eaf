import { getTypesForEIP712Domain, numberToHex, parseSignature, toHex, type Address, type Hex } from "viem";
import {
  openAuthorizationNonce,
  receiveWithAuthorizationTypedData,
  topUpAuthorizationNonce,
} from "../protocol/authorization";
import type { ChannelOffer } from "../protocol/headers";
import type { Eip1193Provider } from "./discoverWallets";

/**
 * Funds a channel with one wallet signature and no ETH: the wallet signs an EIP-3009
 * `ReceiveWithAuthorization` of the amount, and the server's relay submits `openWithAuthorization`
 * or `topUpWithAuthorization`, paying the gas. The authorization's nonce commits to what the
 * money is for (an open: the payee, the session key and the withdraw delay; a top-up: the
 * channel), so the relay cannot use it for anything else.
 */

/** A relay refusal, with its code and the fix the relay suggests. */
export class RelayRefusal extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly fix: string | undefined,
  ) {
    super(message);
    this.name = "RelayRefusal";
  }
}

export interface GaslessFunding {
  readonly provider: Eip1193Provider;
  readonly payer: Address;
  readonly offer: ChannelOffer;
  /** The amount (the spending limit the buyer approves), atomic units. */
  readonly amount: bigint;
  /** Absolute URL of the relay base (`<relay>/open`, `<relay>/topup`). */
  readonly relayUrl: string;
}

/** Opens a channel whose vouchers `signer` (the session key) signs. */
export async function openChannelGasless(
  params: GaslessFunding & { readonly signer: Address },
): Promise<{ channelId: Hex; deposit: bigint }> {
  const withdrawDelay = params.offer.extra.minWithdrawDelay;
  return relay(
    params,
    "open",
    (salt) => openAuthorizationNonce({ payee: params.offer.payTo, signer: params.signer, withdrawDelay, salt }),
    {
      signer: params.signer,
      withdrawDelay,
      payee: params.offer.payTo,
      token: params.offer.asset,
    },
  );
}

/** Adds `amount` to the deposit of `channelId` (a channel of `payer`). */
export async function topUpChannelGasless(
  params: GaslessFunding & { readonly channelId: Hex },
): Promise<{ channelId: Hex; deposit: bigint }> {
  return relay(params, "topup", (salt) => topUpAuthorizationNonce(BigInt(params.channelId), salt), {
    channelId: params.channelId,
  });
}

async function relay(
  params: GaslessFunding,
  operation: "open" | "topup",
  nonceFor: (salt: Hex) => Hex,
  fields: Record<string, unknown>,
): Promise<{ channelId: Hex; deposit: bigint }> {
  const { provider, payer, offer, amount } = params;
  const chainId = Number(/^eip155:(\d+)$/.exec(offer.network)?.[1] ?? NaN);
  if (!Number.isSafeInteger(chainId)) throw new Error(`unsupported network ${offer.network}`);
  // Wallets sign typed data only for their active chain. (The provider is called directly: viem's
  // wallet client would triple the page's script for these three requests.)
  if (Number(await provider.request({ method: "eth_chainId" })) !== chainId) {
    await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: numberToHex(chainId) }] });
  }

  const salt = toHex(crypto.getRandomValues(new Uint8Array(32)));
  const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3_600);
  const typed = receiveWithAuthorizationTypedData(
    { name: offer.extra.name, version: offer.extra.version, chainId, verifyingContract: offer.asset },
    { from: payer, to: offer.extra.contract, value: amount, validAfter: 0n, validBefore, nonce: nonceFor(salt) },
  );
  const signature = (await provider.request({
    method: "eth_signTypedData_v4",
    params: [
      payer,
      JSON.stringify(
        { ...typed, types: { EIP712Domain: getTypesForEIP712Domain({ domain: typed.domain }), ...typed.types } },
        (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value),
      ),
    ],
  })) as Hex;
  const { r, s, v, yParity } = parseSignature(signature);
  const response = await fetch(`${params.relayUrl.replace(/\/+$/, "")}/${operation}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      payer,
      ...fields,
      amount: amount.toString(),
      authorization: {
        validAfter: "0",
        validBefore: validBefore.toString(),
        salt,
        v: Number(v ?? 27n + BigInt(yParity)),
        r,
        s,
      },
    }),
  });
  const body = (await response.json().catch(() => ({}))) as Record<string, string | undefined>;
  if (response.status !== 200 || !body.channelId || !body.deposit) {
    throw new RelayRefusal(body.error ?? `http_${response.status}`, body.message ?? "the relay refused", body.fix);
  }
  return { channelId: body.channelId as Hex, deposit: BigInt(body.deposit) };
}
