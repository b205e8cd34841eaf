import { createWalletClient, custom, parseSignature, toHex, type Address, type Hex } from "viem";
import { openAuthorizationNonce, receiveWithAuthorizationTypedData } from "../protocol/authorization";
import type { ChannelOffer } from "../protocol/headers";
import type { Eip1193Provider } from "./discoverWallets";

/**
 * Opens a channel with one wallet signature and no ETH: the wallet signs an EIP-3009
 * `ReceiveWithAuthorization` of the deposit (its nonce commits to the payee, the session key and
 * the withdraw delay), and the server's relay submits `openWithAuthorization`, paying the gas.
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

export interface GaslessOpen {
  readonly provider: Eip1193Provider;
  readonly payer: Address;
  readonly offer: ChannelOffer;
  /** The voucher signer the channel names: the session key. */
  readonly signer: Address;
  /** The deposit (the buyer's spending limit), atomic units. */
  readonly amount: bigint;
  /** Absolute URL of the relay base (`<relay>/open`). */
  readonly relayUrl: string;
}

export async function openChannelGasless(params: GaslessOpen): Promise<{ channelId: Hex; deposit: bigint }> {
  const { provider, payer, offer, signer, amount } = params;
  const chainId = Number(/^eip155:(\d+)$/.exec(offer.network)?.[1] ?? NaN);
  if (!Number.isSafeInteger(chainId)) throw new Error(`unsupported network ${offer.network}`);
  const wallet = createWalletClient({ account: payer, transport: custom(provider) });
  // Wallets sign typed data only for their active chain.
  if ((await wallet.getChainId()) !== chainId) await wallet.switchChain({ id: chainId });

  const withdrawDelay = offer.extra.minWithdrawDelay;
  const salt = toHex(crypto.getRandomValues(new Uint8Array(32)));
  const validBefore = BigInt(Math.floor(Date.now() / 1000) + 3_600);
  const signature = await wallet.signTypedData({
    account: payer,
    ...receiveWithAuthorizationTypedData(
      { name: offer.extra.name, version: offer.extra.version, chainId, verifyingContract: offer.asset },
      {
        from: payer,
        to: offer.extra.contract,
        value: amount,
        validAfter: 0n,
        validBefore,
        nonce: openAuthorizationNonce({ payee: offer.payTo, signer, withdrawDelay, salt }),
      },
    ),
  });
  const { r, s, v, yParity } = parseSignature(signature);
  const response = await fetch(`${params.relayUrl.replace(/\/+$/, "")}/open`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      payer,
      signer,
      withdrawDelay,
      amount: amount.toString(),
      payee: offer.payTo,
      token: offer.asset,
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
  if (response.status !== 200 || !body.channelId) {
    throw new RelayRefusal(body.error ?? `http_${response.status}`, body.message ?? "the relay refused", body.fix);
  }
  return { channelId: body.channelId as Hex, deposit: BigInt(body.deposit ?? amount) };
}
