import { expect } from "chai";
import secp256k1 from "secp256k1";
import { getAddress, keccak256, toHex, type Address } from "viem";
import {
  createSignerRecoverer,
  createVoucherHasher,
  isNativeSecp256k1Available,
  SECP256K1_BACKEND_ENV,
  verifyVoucherSignature,
  type SignerRecoverer,
  type VoucherVerification,
} from "../../src/protocol/fastVerify";
import { channelIdFor, MAX_AMOUNT } from "../../src/protocol/voucher";
import { createRandom } from "../helpers/random";

const random = createRandom(0x2ec0_7e25);
const toBig = (bytes: Uint8Array): bigint => BigInt(toHex(bytes));
const word = (value: bigint): Uint8Array => {
  const out = new Uint8Array(32);
  for (let i = 31; i >= 0; i--, value >>= 8n) out[i] = Number(value & 0xffn);
  return out;
};

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF = N >> 1n;
const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;

interface Signer {
  readonly key: Uint8Array;
  readonly address: Address;
}

function randomSigner(): Signer {
  let key = random.bytes(32);
  while (!secp256k1.privateKeyVerify(key)) key = random.bytes(32);
  const publicKey = secp256k1.publicKeyCreate(key, false);
  return { key, address: getAddress(`0x${keccak256(publicKey.subarray(1)).slice(-40)}`) };
}

interface Case {
  readonly kind: string;
  readonly channelId: bigint;
  readonly amount: bigint;
  readonly signature: Uint8Array | string;
  /** The expected result, when the category determines it. */
  readonly expected?: VoucherVerification;
}

describe("signer recovery backends", () => {
  const hasher = createVoucherHasher(10, "0x4200000000000000000000000000000000000042");
  const signers = Array.from({ length: 16 }, randomSigner);

  /** A voucher on a random channel of `signer`, with its 65-byte signature r ‖ s ‖ (27 + recid). */
  function signed(signer = random.pick(signers)) {
    const channelId = channelIdFor(signer.address, BigInt(random.int(1 << 24)));
    const amount = random.chance(0.1) ? MAX_AMOUNT : toBig(random.bytes(12));
    const { signature, recid } = secp256k1.ecdsaSign(hasher.digest(channelId, amount), signer.key);
    const full = new Uint8Array(65);
    full.set(signature);
    full[64] = 27 + recid;
    const ok: VoucherVerification = { ok: true, signer: signer.address.toLowerCase() as Address };
    return { signer, channelId, amount, full, recid, ok };
  }

  /** `hex` with one digit replaced by a character that is not a hex digit (length unchanged). */
  function badDigit(hex: string): string {
    const at = 2 + random.int(hex.length - 2);
    return `${hex.slice(0, at)}${random.pick(["g", "x", " ", "\u00e9", "\u0660", "-", "\u{1F600}".slice(0, 1)])}${hex.slice(at + 1)}`;
  }

  const asHexOrBytes = (bytes: Uint8Array): Uint8Array | string => (random.chance(0.5) ? toHex(bytes) : bytes);

  function compactOf(full: Uint8Array): Uint8Array {
    const compact = full.slice(0, 64);
    if (full[64] === 28 || full[64] === 1) compact[32] |= 0x80;
    return compact;
  }

  const generators: Record<string, () => Case> = {
    valid65: () => {
      const v = signed();
      return { kind: "valid65", ...v, signature: asHexOrBytes(v.full), expected: v.ok };
    },
    validV01: () => {
      const v = signed();
      v.full[64] -= 27;
      return { kind: "validV01", ...v, signature: asHexOrBytes(v.full), expected: v.ok };
    },
    validCompact: () => {
      const v = signed();
      return { kind: "validCompact", ...v, signature: asHexOrBytes(compactOf(v.full)), expected: v.ok };
    },
    highSTwin: () => {
      const v = signed();
      const twin = v.full.slice();
      twin.set(word(N - toBig(v.full.subarray(32, 64))), 32);
      twin[64] = 27 + (v.recid ^ 1);
      // Only the 65-byte form: a high s (> 2^255 in practice) cannot be written in the compact form.
      return { kind: "highSTwin", ...v, signature: asHexOrBytes(twin), expected: { ok: false, reason: "high_s" } };
    },
    bitFlip: () => {
      const v = signed();
      const bit = random.int(65 * 8);
      v.full[bit >> 3] ^= 1 << (bit & 7);
      return { kind: "bitFlip", ...v, signature: asHexOrBytes(v.full) };
    },
    otherVoucher: () => {
      const v = signed();
      const channelId = random.chance(0.5) ? v.channelId ^ BigInt(1 + random.int(255)) : v.channelId;
      const amount = channelId === v.channelId ? v.amount ^ BigInt(1 + random.int(255)) : v.amount;
      return {
        kind: "otherVoucher",
        channelId,
        amount,
        signature: asHexOrBytes(v.full),
        expected: { ok: false, reason: "bad_signature" },
      };
    },
    wrongSigner: () => {
      const v = signed();
      const other = signers[(signers.indexOf(v.signer) + 1) % signers.length];
      return {
        kind: "wrongSigner",
        channelId: channelIdFor(other.address, v.channelId & 0xffffffn),
        amount: v.amount,
        signature: asHexOrBytes(v.full),
        expected: { ok: false, reason: "bad_signature" },
      };
    },
    random65: () => {
      const bytes = random.bytes(65);
      bytes[64] = random.pick([27, 28, 0, 1, random.int(256)]);
      if (random.chance(0.7)) bytes[32] &= 0x7f; // mostly low s, so recovery runs
      return { kind: "random65", ...signed(), signature: asHexOrBytes(bytes) };
    },
    random64: () => ({ kind: "random64", ...signed(), signature: asHexOrBytes(random.bytes(64)) }),
    boundary: () => {
      const v = signed();
      const values = [0n, 1n, 2n, HALF, HALF + 1n, N - 1n, N, N + 1n, P - 1n, (1n << 256n) - 1n];
      const bytes = v.full.slice();
      if (random.chance(0.5)) bytes.set(word(random.pick(values)), 0);
      else bytes.set(word(random.pick(values)), 32);
      return { kind: "boundary", ...v, signature: asHexOrBytes(random.chance(0.3) ? compactOf(bytes) : bytes) };
    },
    badV: () => {
      const v = signed();
      let bad = random.int(256);
      while ([0, 1, 27, 28].includes(bad)) bad = random.int(256);
      v.full[64] = bad;
      return {
        kind: "badV",
        ...v,
        signature: asHexOrBytes(v.full),
        expected: { ok: false, reason: "malformed_signature" },
      };
    },
    badEncoding: () => {
      const v = signed();
      const hex = toHex(v.full);
      const variants: (string | Uint8Array)[] = [
        random.bytes(random.pick([0, 1, 32, 63, 66, 96, random.int(200)].filter((n) => n !== 64 && n !== 65))),
        hex.slice(0, -1),
        hex.slice(0, -4),
        `${hex}00`,
        hex.slice(2),
        `0X${hex.slice(2)}`,
        badDigit(hex),
      ];
      return {
        kind: "badEncoding",
        ...v,
        signature: random.pick(variants),
        expected: { ok: false, reason: "malformed_signature" },
      };
    },
  };

  const cases: Case[] = [];
  for (const make of Object.values(generators)) for (let i = 0; i < 200; i++) cases.push(make());

  let native: SignerRecoverer;
  let js: SignerRecoverer;

  before(function () {
    if (!isNativeSecp256k1Available()) throw new Error("the libsecp256k1 binding must load in this environment");
    native = createSignerRecoverer({ backend: "native" });
    js = createSignerRecoverer({ backend: "js" });
  });

  it(`native and JS give identical results on ${cases.length} valid and invalid inputs`, () => {
    expect(cases.length).to.be.at.least(2000);
    const seen = new Map<string, number>();
    for (const [index, c] of cases.entries()) {
      const fromNative = verifyVoucherSignature(hasher, native, c.channelId, c.amount, c.signature);
      const fromJs = verifyVoucherSignature(hasher, js, c.channelId, c.amount, c.signature);
      const label = `case ${index} (${c.kind}): ${typeof c.signature === "string" ? c.signature : toHex(c.signature)}`;
      expect(fromJs, label).to.deep.equal(fromNative);
      if (c.expected !== undefined) expect(fromNative, label).to.deep.equal(c.expected);
      const outcome = fromNative.ok ? "ok" : fromNative.reason;
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
    }
    // Every outcome is exercised, so agreement is not the trivial "both always fail".
    for (const outcome of ["ok", "bad_signature", "high_s", "malformed_signature"]) {
      expect(seen.get(outcome) ?? 0, outcome).to.be.at.least(100);
    }
  });

  it("recovers the same address as libsecp256k1 itself, or reports failure, for raw inputs", () => {
    const out = new Uint8Array(22).fill(0xaa);
    for (let i = 0; i < 300; i++) {
      const digest = random.bytes(32);
      const sig = random.bytes(64);
      if (i % 3 === 0) sig.set(word(toBig(sig.subarray(0, 32)) % N || 1n), 0);
      const recid = random.int(2);
      let expected: string | null;
      try {
        expected = keccak256(secp256k1.ecdsaRecover(sig, recid, digest, false).subarray(1)).slice(-40);
      } catch {
        expected = null;
      }
      for (const recoverer of [native, js]) {
        const ok = recoverer.recoverAddressInto(digest, sig, recid, out, 1);
        expect(ok ? Buffer.from(out.subarray(1, 21)).toString("hex") : null, `${recoverer.backend} ${i}`).to.equal(
          expected,
        );
        expect(out[0]).to.equal(0xaa);
        expect(out[21]).to.equal(0xaa);
      }
    }
  });

  describe("backend selection", () => {
    const saved = process.env[SECP256K1_BACKEND_ENV];
    afterEach(() => {
      if (saved === undefined) delete process.env[SECP256K1_BACKEND_ENV];
      else process.env[SECP256K1_BACKEND_ENV] = saved;
    });

    it("defaults to native when the binding loads", () => {
      delete process.env[SECP256K1_BACKEND_ENV];
      expect(createSignerRecoverer().backend).to.equal("native");
      expect(createSignerRecoverer({ backend: "auto" }).backend).to.equal("native");
    });

    it("honours the environment variable, and an explicit option over it", () => {
      process.env[SECP256K1_BACKEND_ENV] = "js";
      expect(createSignerRecoverer().backend).to.equal("js");
      expect(createSignerRecoverer({ backend: "native" }).backend).to.equal("native");
      process.env[SECP256K1_BACKEND_ENV] = "native";
      expect(createSignerRecoverer().backend).to.equal("native");
      expect(createSignerRecoverer({ backend: "js" }).backend).to.equal("js");
    });

    it("refuses an unknown environment value", () => {
      process.env[SECP256K1_BACKEND_ENV] = "wasm";
      expect(() => createSignerRecoverer()).to.throw(/PAYCHAN_SECP256K1/);
    });
  });
});
