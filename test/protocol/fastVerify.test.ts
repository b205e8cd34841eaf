import { expect } from "chai";
import { hexToBytes, parseSignature, toHex, type Address, type Hex } from "viem";
import { privateKeyToAccount, type PrivateKeyAccount } from "viem/accounts";
import type { VoucherSignatureVerifier } from "../../src/server/engine";
import {
  createSignerRecoverer,
  createVoucherHasher,
  createVoucherSignatureVerifier,
  parseVoucherSignature,
  verifyVoucherSignature,
  voucherDomainSeparator,
  VOUCHER_TYPEHASH,
  type SignerRecoverer,
  type VoucherHasher,
} from "../../src/protocol/fastVerify";
import {
  channelIdFor,
  MAX_AMOUNT,
  toCompactSignature,
  voucherDigest,
  voucherDomain,
  voucherTypedData,
} from "../../src/protocol/voucher";
import { createRandom } from "../helpers/random";

const random = createRandom(0xfa57_7e51);
const randomChainId = (): number => Number(random.below(53) % BigInt(Number.MAX_SAFE_INTEGER)) + 1;
const randomKey = (): Hex => toHex(1n + random.below(252), { size: 32 });

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** The malleable twin (r, n - s, flipped parity) of a 65-byte signature. */
function highSTwin(signature: Hex): Hex {
  const { r, s, yParity } = parseSignature(signature);
  const twinS = N - BigInt(s);
  return `${r}${toHex(twinS, { size: 32 }).slice(2)}${yParity === 0 ? "1c" : "1b"}`;
}

describe("fast voucher verification", () => {
  describe("createVoucherHasher", () => {
    it("matches viem hashTypedData (voucher.ts) on 1,000 random vouchers and domains", () => {
      let hasher: VoucherHasher | undefined;
      let domain = voucherDomain(1, random.address());
      const out = new Uint8Array(40);
      for (let i = 0; i < 1000; i++) {
        if (i % 10 === 0) {
          domain = voucherDomain(randomChainId(), random.address());
          hasher = createVoucherHasher(domain.chainId, domain.verifyingContract);
        }
        const channelId = i === 0 ? 0n : i === 1 ? (1n << 256n) - 1n : random.below(256);
        const amount = i === 2 ? MAX_AMOUNT : i === 3 ? 0n : random.below(96);
        const expected = voucherDigest(domain, { channelId, cumulativeAmount: amount });
        expect(toHex(hasher!.digest(channelId, amount)), `voucher ${i}`).to.equal(expected);
        hasher!.digestInto(channelId, amount, out, 5);
        expect(toHex(out.subarray(5, 37))).to.equal(expected);
      }
    });

    it("exposes the domain separator and type hash the contract uses", () => {
      const hasher = createVoucherHasher(8453, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
      expect(toHex(VOUCHER_TYPEHASH)).to.equal("0xbe6849c7243c454cfa57c6baf0ec66e2ea30a84133e4d1785cf751c28a37aec4");
      expect(toHex(hasher.domainSeparator)).to.equal(
        toHex(voucherDomainSeparator(8453, "0x5FbDB2315678afecb367f032d93F642f64180aa3")),
      );
      hasher.domainSeparator.fill(0); // a copy: the hasher keeps working
      const domain = voucherDomain(8453, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
      expect(toHex(hasher.digest(7n, 9n))).to.equal(voucherDigest(domain, { channelId: 7n, cumulativeAmount: 9n }));
    });

    it("rejects out-of-range inputs and bad domains", () => {
      const hasher = createVoucherHasher(10, random.address());
      expect(() => hasher.digest(-1n, 1n)).to.throw(RangeError);
      expect(() => hasher.digest(1n << 256n, 1n)).to.throw(RangeError);
      expect(() => hasher.digest(1n, MAX_AMOUNT + 1n)).to.throw(RangeError);
      expect(() => hasher.digest(1n, -1n)).to.throw(RangeError);
      expect(() => createVoucherHasher(0, random.address())).to.throw(RangeError);
      expect(() => createVoucherHasher(1.5, random.address())).to.throw(RangeError);
      expect(() => createVoucherHasher(1, "0x1234" as Address)).to.throw(TypeError);
    });
  });

  describe("parseVoucherSignature", () => {
    const r = "11".repeat(32);
    const s = "22".repeat(32);

    it("parses 65-byte (v 27/28/0/1) and 64-byte compact forms, from hex or bytes", () => {
      for (const [v, parity] of [
        ["1b", 0],
        ["1c", 1],
        ["00", 0],
        ["01", 1],
      ] as const) {
        const hex: Hex = `0x${r}${s}${v}`;
        for (const input of [hex, hexToBytes(hex)]) {
          const parsed = parseVoucherSignature(input);
          expect(parsed.ok).to.equal(true);
          if (!parsed.ok) continue;
          expect(parsed.yParity).to.equal(parity);
          expect(toHex(parsed.r)).to.equal(`0x${r}`);
          expect(toHex(parsed.s)).to.equal(`0x${s}`);
          expect(toHex(parsed.compact)).to.equal(`0x${r}${parity ? "a2" : "22"}${"22".repeat(31)}`);
          // The compact form parses back to the same signature.
          const again = parseVoucherSignature(parsed.compact);
          expect(again.ok && again.yParity === parity && toHex(again.s) === `0x${s}`).to.equal(true);
        }
      }
      expect(parseVoucherSignature(`0x${r.toUpperCase()}${s}1b`).ok).to.equal(true);
    });

    it("rejects malformed input strictly", () => {
      const cases: (string | Uint8Array)[] = [
        "",
        "0x",
        `${r}${s}1b`, // no prefix
        `0X${r}${s}1b`,
        `0x${r}${s}1`, // odd length
        `0x${r}${s}1b00`,
        `0x${r}${s.slice(0, -1)}g1b`, // non-hex digit
        `0x${r}${s.slice(0, -1)} 1b`,
        `0x${r}${s.slice(0, -1)}\u0661`, // Arabic-Indic one: a digit, but not hex
        `0x${r}${s}1d`, // v = 29
        `0x${r}${s}02`,
        `0x${"00".repeat(32)}${s}1b`, // r = 0
        `0x${r}${"00".repeat(32)}1b`, // s = 0
        `0x${N.toString(16)}${s}1b`, // r = n
        `0x${r}${N.toString(16)}1b`, // s = n
        `0x${"ff".repeat(32)}${s}1b`,
        new Uint8Array(63),
        new Uint8Array(66),
        new Uint8Array(0),
        // Untyped callers.
        null as unknown as string,
        Array.from({ length: 65 }, () => 1) as unknown as Uint8Array,
        65 as unknown as string,
      ];
      for (const input of cases) {
        const parsed = parseVoucherSignature(input);
        expect(parsed, String(input)).to.deep.equal({ ok: false, reason: "malformed_signature" });
      }
    });

    it("classifies s > n/2 as high_s, and s = n/2 as valid", () => {
      const half = (N - 1n) / 2n;
      expect(parseVoucherSignature(`0x${r}${toHex(half, { size: 32 }).slice(2)}1b`).ok).to.equal(true);
      for (const bad of [half + 1n, N - 1n, 1n << 255n]) {
        const parsed = parseVoucherSignature(`0x${r}${toHex(bad, { size: 32 }).slice(2)}1b`);
        expect(parsed).to.deep.equal({ ok: false, reason: "high_s" });
      }
      // Compact: the top bit is the parity, so the masked s decides.
      const compactHigh = `0x${r}${toHex((1n << 255n) | (half + 1n), { size: 32 }).slice(2)}`;
      expect(parseVoucherSignature(compactHigh)).to.deep.equal({ ok: false, reason: "high_s" });
    });
  });

  for (const backend of ["native", "js"] as const) {
    describe(`verifyVoucherSignature with viem-signed vouchers (${backend})`, () => {
      let recoverer: SignerRecoverer;
      const contract = random.address();
      const domain = voucherDomain(8453, contract);
      const hasher = createVoucherHasher(domain.chainId, contract);
      const accounts: PrivateKeyAccount[] = Array.from({ length: 6 }, () => privateKeyToAccount(randomKey()));

      before(() => {
        recoverer = createSignerRecoverer({ backend });
        expect(recoverer.backend).to.equal(backend);
      });

      it("accepts the channel signer's signatures in every encoding and rejects all others", async () => {
        for (const [index, account] of accounts.entries()) {
          const other = accounts[(index + 1) % accounts.length];
          const channelId = channelIdFor(account.address, random.below(24));
          const amount = index === 0 ? MAX_AMOUNT : 1n + random.below(96);
          const typed = voucherTypedData(domain, { channelId, cumulativeAmount: amount });
          const signature = await account.signTypedData(typed);
          const verify = (sig: Hex | Uint8Array, id = channelId, amt = amount) =>
            verifyVoucherSignature(hasher, recoverer, id, amt, sig);
          const accepted = { ok: true, signer: account.address.toLowerCase() };

          expect(verify(signature)).to.deep.equal(accepted);
          expect(verify(hexToBytes(signature))).to.deep.equal(accepted);
          const compact = toCompactSignature(signature);
          expect(verify(compact)).to.deep.equal(accepted);
          expect(verify(hexToBytes(compact))).to.deep.equal(accepted);
          const v01 = `${signature.slice(0, -2)}0${Number.parseInt(signature.slice(-2), 16) - 27}` as Hex;
          expect(verify(v01)).to.deep.equal(accepted);
          expect(verify(`0x${signature.slice(2).toUpperCase()}`)).to.deep.equal(accepted);

          // Someone else's signature over the same voucher.
          expect(verify(await other.signTypedData(typed))).to.deep.equal({ ok: false, reason: "bad_signature" });
          // The same signature for a different voucher, channel or domain.
          expect(verify(signature, channelId, amount - 1n)).to.deep.equal({ ok: false, reason: "bad_signature" });
          expect(verify(signature, channelId ^ 1n)).to.deep.equal({ ok: false, reason: "bad_signature" });
          const otherDomain = createVoucherHasher(10, contract);
          expect(verifyVoucherSignature(otherDomain, recoverer, channelId, amount, signature)).to.deep.equal({
            ok: false,
            reason: "bad_signature",
          });
          // Flipped parity recovers some other key.
          const flipped = `${signature.slice(0, -2)}${signature.endsWith("1b") ? "1c" : "1b"}` as Hex;
          expect(verify(flipped)).to.deep.equal({ ok: false, reason: "bad_signature" });
          // The malleable twin is valid ECDSA for the same key, and still refused, like the contract does.
          expect(verify(highSTwin(signature))).to.deep.equal({ ok: false, reason: "high_s" });
          // Out-of-range vouchers.
          expect(verify(signature, channelId | (1n << 184n))).to.deep.equal({ ok: false, reason: "malformed_voucher" });
          expect(verify(signature, channelId, MAX_AMOUNT + 1n)).to.deep.equal({
            ok: false,
            reason: "malformed_voucher",
          });
          expect(verify(signature, -channelId)).to.deep.equal({ ok: false, reason: "malformed_voucher" });
          expect(verify(signature.slice(0, -4) as Hex)).to.deep.equal({ ok: false, reason: "malformed_signature" });

          // The engine-shaped adapter maps the same outcomes to the engine's verdicts.
          const check: VoucherSignatureVerifier = createVoucherSignatureVerifier(hasher, recoverer);
          expect(check(channelId, amount, signature)).to.equal("ok");
          expect(check(channelId, amount - 1n, signature)).to.equal("invalid_signature");
          expect(check(channelId, amount, highSTwin(signature))).to.equal("high_s_signature");
          expect(check(channelId, amount, "0x1234")).to.equal("malformed_signature");
          expect(check(channelId, -1n, signature)).to.equal("malformed_signature");
        }
      });
    });
  }
});
