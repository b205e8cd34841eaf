import { expect } from "chai";
import { toHex, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  decodeExactPayment,
  transferWithAuthorizationTypedData,
  verifyExactPayment,
  type DecodedExactPayment,
  type ExactTerms,
} from "../../src/protocol/exact";
import type { TokenDomain } from "../../src/protocol/authorization";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/**
 * The `exact` scheme's offline checks: what decodes, and each refusal of verifyExactPayment with
 * its reason code, on authorizations signed with viem the way x402's exact client signs them.
 */

const NOW = 1_767_225_600;
const TOKEN: Address = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const DOMAIN: TokenDomain = { name: "USDC", version: "2", chainId: 84532, verifyingContract: TOKEN };
const BUYER = privateKeyToAccount(HARDHAT_KEYS[4]);
const PAYEE: Address = privateKeyToAccount(HARDHAT_KEYS[2]).address;
const TERMS: ExactTerms = { network: "eip155:84532", domain: DOMAIN, payTo: PAYEE, price: 1000n, nowSec: NOW };
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** An x402 exact PaymentPayload body (JSON as sent) for `message` overrides, signed by the buyer. */
async function body(overrides: Partial<Record<"value" | "validAfter" | "validBefore" | "to", string>> = {}) {
  const authorization = {
    from: BUYER.address,
    to: overrides.to ?? PAYEE,
    value: overrides.value ?? "1000",
    validAfter: overrides.validAfter ?? "0",
    validBefore: overrides.validBefore ?? String(NOW + 60),
    nonce: toHex(7n, { size: 32 }),
  };
  const signature = await BUYER.signTypedData(
    transferWithAuthorizationTypedData(DOMAIN, {
      from: authorization.from,
      to: authorization.to as Address,
      value: BigInt(authorization.value),
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce,
    }),
  );
  return {
    x402Version: 2,
    accepted: { scheme: "exact", network: "eip155:84532", asset: TOKEN, payTo: PAYEE, amount: "1000" },
    payload: { signature, authorization },
  };
}

function decoded(value: unknown): DecodedExactPayment {
  const result = decodeExactPayment(value);
  if (!result?.ok) throw new Error(`not decoded: ${JSON.stringify(result)}`);
  return result.payment;
}

describe("exact scheme: decoding and offline verification", () => {
  it("accepts a well-formed payment signed by its payer", async () => {
    expect(await verifyExactPayment(decoded(await body()), TERMS)).to.deep.equal({ ok: true });
    expect(await verifyExactPayment(decoded(await body({ value: "5000" })), TERMS)).to.deep.equal({ ok: true });
  });

  it("leaves other schemes alone and names what is malformed", async () => {
    expect(decodeExactPayment({ x402Version: 2, accepted: { scheme: "channel" }, payload: {} })).to.equal(undefined);
    expect(decodeExactPayment("exact")).to.equal(undefined);
    const good = await body();
    const broken = (edit: (b: { payload: Record<string, unknown> }) => void) => {
      const copy = JSON.parse(JSON.stringify(good)) as { payload: Record<string, unknown> };
      edit(copy);
      return decodeExactPayment(copy);
    };
    const invalid = { ok: false, reason: "invalid_payload" };
    expect(broken((b) => delete b.payload.authorization)).to.deep.equal(invalid);
    expect(broken((b) => ((b.payload.authorization as Record<string, unknown>).value = "-1"))).to.deep.equal(invalid);
    expect(broken((b) => ((b.payload.authorization as Record<string, unknown>).value = 1000))).to.deep.equal(invalid);
    expect(broken((b) => ((b.payload.authorization as Record<string, unknown>).nonce = "0x07"))).to.deep.equal(invalid);
    expect(broken((b) => ((b.payload.authorization as Record<string, unknown>).from = "0x12"))).to.deep.equal(invalid);
    expect(broken((b) => (b.payload.signature = "0x1234"))).to.deep.equal({ ok: false, reason: "malformed_signature" });
  });

  it("refuses each broken term with its reason code", async () => {
    const check = async (payment: DecodedExactPayment, terms: Partial<ExactTerms> = {}) =>
      verifyExactPayment(payment, { ...TERMS, ...terms });
    const ok = decoded(await body());
    expect(await check(ok, { network: "eip155:8453" })).to.deep.equal({ ok: false, reason: "wrong_network" });
    expect(await check({ ...ok, asset: PAYEE })).to.deep.equal({ ok: false, reason: "wrong_token" });
    expect(await check(decoded(await body({ to: BUYER.address })))).to.deep.equal({ ok: false, reason: "wrong_payee" });
    expect(await check(ok, { price: 1001n })).to.deep.equal({ ok: false, reason: "insufficient_amount" });
    expect(await check(decoded(await body({ validAfter: String(NOW + 1) })))).to.deep.equal({
      ok: false,
      reason: "authorization_not_yet_valid",
    });
    expect(await check(decoded(await body({ validBefore: String(NOW + 5) })))).to.deep.equal({
      ok: false,
      reason: "authorization_expired",
    });
    expect(await check(decoded(await body({ validBefore: String(NOW + 6) })))).to.deep.equal({ ok: true });
    // Signed for another token domain: recovers to someone else.
    expect(await check(ok, { domain: { ...DOMAIN, name: "USD Coin" } })).to.deep.equal({
      ok: false,
      reason: "invalid_signature",
    });
    // The same signature with s' = n - s (and v flipped) recovers the same signer: refused as malleable.
    const s = BigInt(`0x${ok.signature.slice(66, 130)}`);
    const v = parseInt(ok.signature.slice(130), 16);
    const flipped =
      `${ok.signature.slice(0, 66)}${(SECP256K1_N - s).toString(16).padStart(64, "0")}${(v === 27 ? 28 : 27).toString(16)}` as Hex;
    expect(await check({ ...ok, signature: flipped })).to.deep.equal({ ok: false, reason: "high_s_signature" });
  });
});
