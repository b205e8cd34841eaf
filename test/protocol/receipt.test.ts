import { expect } from "chai";
import { keccak256, stringToBytes, toHex, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  RECEIPT_TYPE_STRING,
  ReceiptSigner,
  parseReceipt,
  receiptDigest,
  requestHash,
  verifyReceipt,
  type Receipt,
} from "../../src/protocol/receipt";
import { MAX_AMOUNT } from "../../src/protocol/voucher";
import { CHAIN_ID, CONTRACT, CURVE_N, OTHER_ADDRESS, PAYER_KEY, RECEIPT_KEY } from "../helpers/memoryStore";
import { createRandom, type Random } from "../helpers/random";

const SIGNER = privateKeyToAccount(RECEIPT_KEY).address;

function randomReceipt(random: Random): Receipt {
  const uniform = (bits: number): bigint => random.below(bits, { shape: "uniform", chunkBits: 16 });
  const bits = () => 1 + random.int(96);
  return {
    channelId: uniform(1 + random.int(184)),
    voucherAmount: uniform(bits()),
    charge: uniform(bits()),
    chargedTotal: uniform(bits()),
    request: toHex(uniform(256), { size: 32 }),
    issuedAt: random.int(2 ** 40),
  };
}

function withEnv<T>(name: string, value: string, fn: () => T): T {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

describe("receipts", () => {
  it("has the documented EIP-712 type string", () => {
    expect(RECEIPT_TYPE_STRING).to.equal(
      "Receipt(uint256 channelId,uint96 voucherAmount,uint96 charge,uint96 chargedTotal,bytes32 request,uint64 issuedAt)",
    );
  });

  it('binds a receipt to keccak256("<METHOD> <path?query>"), with the method upper-cased', () => {
    const expected = keccak256(stringToBytes("GET /weather?city=Lisbon"));
    expect(requestHash("GET", "/weather?city=Lisbon")).to.equal(expected);
    expect(requestHash("get", "/weather?city=Lisbon")).to.equal(expected);
    expect(requestHash("POST", "/weather?city=Lisbon")).not.to.equal(expected);
    expect(requestHash("GET", "/weather?city=Porto")).not.to.equal(expected);
  });

  it("hashes request lines of any length and any characters like viem's keccak256", () => {
    const random = createRandom(31);
    const alphabet = ["a", "/", "?", "=", "&", "%20", "é", "€", "😀", "Z"];
    for (const length of [0, 1, 50, 130, 131, 132, 135, 136, 137, 300, 340, 341, 342, 1_000, 5_000]) {
      let path = "/";
      while (path.length < length) path += alphabet[random.int(alphabet.length)];
      expect(requestHash("get", path), `length ${length}`).to.equal(keccak256(stringToBytes(`GET ${path}`)));
    }
    // The shared scratch buffer does not leak a longer previous line into a shorter one.
    const long = requestHash("GET", `/${"x".repeat(900)}`);
    expect(requestHash("GET", "/x")).to.equal(keccak256(stringToBytes("GET /x")));
    expect(requestHash("GET", `/${"x".repeat(900)}`)).to.equal(long);
  });

  it("computes the same digest on the fast path as viem, for 300 random receipts and the extremes", () => {
    const signer = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT);
    const random = createRandom(2024);
    const receipts = Array.from({ length: 300 }, () => randomReceipt(random));
    receipts.push(
      { channelId: 0n, voucherAmount: 0n, charge: 0n, chargedTotal: 0n, request: `0x${"0".repeat(64)}`, issuedAt: 0 },
      {
        channelId: (1n << 256n) - 1n,
        voucherAmount: MAX_AMOUNT,
        charge: MAX_AMOUNT,
        chargedTotal: MAX_AMOUNT,
        request: `0x${"f".repeat(64)}`,
        issuedAt: Number.MAX_SAFE_INTEGER,
      },
    );
    for (const receipt of receipts) {
      expect(toHex(signer.digest(receipt))).to.equal(receiptDigest(CHAIN_ID, CONTRACT, receipt));
    }
    // The digest depends on the domain.
    const other = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID + 1, CONTRACT);
    expect(toHex(other.digest(receipts[0]))).to.equal(receiptDigest(CHAIN_ID + 1, CONTRACT, receipts[0]));
    expect(toHex(other.digest(receipts[0]))).not.to.equal(receiptDigest(CHAIN_ID, CONTRACT, receipts[0]));
  });

  it("signs receipts that verify offline, round-trip through the wire form, and fail when altered", async () => {
    const signer = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT);
    expect(signer.address).to.equal(SIGNER);
    const random = createRandom(99);
    for (let i = 0; i < 25; i++) {
      const receipt = randomReceipt(random);
      const signed = signer.sign(receipt);
      expect(parseReceipt(signed)).to.deep.equal(receipt);
      expect(signed.channelId).to.equal(`0x${receipt.channelId.toString(16)}`);
      expect(signed.signer).to.equal(SIGNER);
      expect(signed.signature).to.match(/^0x[0-9a-f]{128}(1b|1c)$/);
      // low-s
      expect(BigInt(`0x${signed.signature.slice(66, 130)}`) <= CURVE_N / 2n).to.equal(true);
      expect(await verifyReceipt(signed, SIGNER, CHAIN_ID, CONTRACT)).to.equal(true);
      const tampered = { ...signed, charge: (receipt.charge + 1n).toString() };
      expect(await verifyReceipt(tampered, SIGNER, CHAIN_ID, CONTRACT)).to.equal(false);
    }
  });

  it("refuses receipts from another signer, domain, or with a garbage signature", async () => {
    const signed = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT).sign(randomReceipt(createRandom(1)));
    expect(await verifyReceipt(signed, OTHER_ADDRESS, CHAIN_ID, CONTRACT)).to.equal(false);
    expect(await verifyReceipt(signed, SIGNER, CHAIN_ID + 1, CONTRACT)).to.equal(false);
    expect(await verifyReceipt(signed, SIGNER, CHAIN_ID, OTHER_ADDRESS)).to.equal(false);
    expect(await verifyReceipt({ ...signed, signature: "0x1234" }, SIGNER, CHAIN_ID, CONTRACT)).to.equal(false);
    // The receipt's own signer field must name the expected signer too.
    expect(await verifyReceipt({ ...signed, signer: OTHER_ADDRESS }, SIGNER, CHAIN_ID, CONTRACT)).to.equal(false);
    // A receipt signed by another key, claiming to be from the server, fails.
    const forged = new ReceiptSigner(PAYER_KEY, CHAIN_ID, CONTRACT).sign(parseReceipt(signed));
    expect(await verifyReceipt({ ...forged, signer: SIGNER }, SIGNER, CHAIN_ID, CONTRACT)).to.equal(false);
  });

  it("gives identical signatures with libsecp256k1 and the pure-JS fallback (RFC 6979)", () => {
    const native = new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT);
    const js = withEnv("PAYCHAN_SECP256K1", "js", () => new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT));
    expect(native.backend).to.equal("native");
    expect(js.backend).to.equal("js");
    expect(new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT, { backend: "js" }).backend).to.equal("js");
    const random = createRandom(5);
    for (let i = 0; i < 50; i++) {
      const receipt = randomReceipt(random);
      expect(js.sign(receipt)).to.deep.equal(native.sign(receipt));
    }
  });

  it("signs what viem's signTypedData signs", async () => {
    const account = privateKeyToAccount(RECEIPT_KEY);
    const receipt = randomReceipt(createRandom(77));
    const viemSignature: Hex = await account.signTypedData({
      domain: { name: "paychan receipt", version: "1", chainId: CHAIN_ID, verifyingContract: CONTRACT },
      types: {
        Receipt: [
          { name: "channelId", type: "uint256" },
          { name: "voucherAmount", type: "uint96" },
          { name: "charge", type: "uint96" },
          { name: "chargedTotal", type: "uint96" },
          { name: "request", type: "bytes32" },
          { name: "issuedAt", type: "uint64" },
        ],
      },
      primaryType: "Receipt",
      message: { ...receipt, issuedAt: BigInt(receipt.issuedAt) },
    });
    expect(new ReceiptSigner(RECEIPT_KEY, CHAIN_ID, CONTRACT).sign(receipt).signature).to.equal(viemSignature);
  });
});
