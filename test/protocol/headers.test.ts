import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  MAX_PAYMENT_HEADER_BYTES,
  SCHEME,
  X402_VERSION,
  channelIdHex,
  decodeHeader,
  decodePaymentSignature,
  encodeHeader,
  encodePaymentSignature,
  type DecodeResult,
  type PaymentRequired,
  type SettleResponse,
} from "../../src/protocol/headers";
import {
  RECEIPT_DOMAIN_NAME,
  RECEIPT_DOMAIN_VERSION,
  RECEIPT_TYPE_STRING,
  requestHash,
  verifyReceipt,
} from "../../src/protocol/receipt";
import {
  CHANNEL_NONCE_BITS,
  DOMAIN_NAME,
  DOMAIN_VERSION,
  MAX_AMOUNT,
  VOUCHER_TYPE_STRING,
  toCompactSignature,
} from "../../src/protocol/voucher";
import {
  ASSET,
  CHAIN_ID,
  CONTRACT,
  NETWORK,
  PAYEE,
  fastVerifier,
  harness,
  payerChannel,
  signVoucher,
} from "../helpers/memoryStore";
import { validPaymentPayload, validPaymentRequired, validSettleResponse } from "../helpers/x402Wire";

const CH = payerChannel(5n);
/** The channel of the examples in docs/protocol.md: nonce 0 of the test payer. */
const CH_DOC = payerChannel(0n);
const SIG = signVoucher(CH, 1_000n);

function body(overrides: Record<string, unknown> = {}, payload: Record<string, unknown> = {}) {
  return {
    x402Version: 2,
    accepted: { scheme: "channel", network: NETWORK, asset: ASSET, payTo: PAYEE, extra: { contract: CONTRACT } },
    payload: { channelId: channelIdHex(CH), amount: "1000", signature: SIG, ...payload },
    ...overrides,
  };
}

function reason(result: DecodeResult): string {
  return result.ok ? "ok" : result.reason;
}

describe("x402 headers", () => {
  it("round-trips any JSON body through encodeHeader / decodeHeader (base64 of UTF-8 JSON)", () => {
    const value = { a: 1, b: ["x", null], c: { d: "é ✓" } };
    const header = encodeHeader(value);
    expect(header).to.match(/^[A-Za-z0-9+/]+={0,2}$/);
    expect(Buffer.from(header, "base64").toString("utf8")).to.equal(JSON.stringify(value));
    expect(decodeHeader(header)).to.deep.equal(value);
    expect(() => decodeHeader("%%%")).to.throw();
  });

  it("encodes a PAYMENT-SIGNATURE (x402's PaymentPayload, the whole offer echoed) and decodes it back", () => {
    const offer = harness().offer(1_000n);
    const voucher = { channelId: channelIdHex(CH), amount: "1000", signature: SIG };
    const resource = { url: "http://127.0.0.1/weather?city=Lisbon" };
    const header = encodePaymentSignature(offer, voucher, resource);
    expect(decodeHeader(header)).to.deep.equal({ x402Version: 2, resource, accepted: offer, payload: voucher });
    expect(validPaymentPayload(header).accepted).to.deep.equal(offer);
    // A refusal's channel view is not echoed back.
    const view = {
      channelId: voucher.channelId,
      deposit: "1",
      chargedTotal: "0",
      highestAmount: "0",
      remaining: "1",
      withdrawReadyAt: 0,
    };
    const refusedOffer = { ...offer, extra: { ...offer.extra, channelState: view } };
    expect(decodeHeader(encodePaymentSignature(refusedOffer, voucher, resource))).to.deep.equal(decodeHeader(header));
    expect(decodePaymentSignature(header)).to.deep.equal({
      ok: true,
      voucher: {
        channelId: CH,
        amount: 1_000n,
        signature: SIG,
        network: NETWORK,
        scheme: SCHEME,
        asset: ASSET,
        payTo: PAYEE,
        contract: CONTRACT,
      },
    });
    expect(header.length).to.be.lessThan(MAX_PAYMENT_HEADER_BYTES / 3);
  });

  it("writes channel ids as minimal lowercase 0x-hex", () => {
    expect(channelIdHex(0n)).to.equal("0x0");
    expect(channelIdHex(255n)).to.equal("0xff");
    expect(BigInt(channelIdHex(CH))).to.equal(CH);
  });

  it("accepts optional asset, payTo and extra.contract, a 64-byte signature, and boundary amounts", () => {
    const bare = body({ accepted: { scheme: "channel", network: NETWORK } });
    const decoded = decodePaymentSignature(encodeHeader(bare));
    expect(decoded.ok && [decoded.voucher.asset, decoded.voucher.payTo, decoded.voucher.contract]).to.deep.equal([
      undefined,
      undefined,
      undefined,
    ]);
    const extraOnly = body({ accepted: { scheme: "channel", network: NETWORK, extra: {} } });
    expect(reason(decodePaymentSignature(encodeHeader(extraOnly)))).to.equal("ok");
    const compact = toCompactSignature(SIG);
    expect(reason(decodePaymentSignature(encodeHeader(body({}, { signature: compact }))))).to.equal("ok");
    for (const amount of ["0", MAX_AMOUNT.toString()]) {
      const result = decodePaymentSignature(encodeHeader(body({}, { amount })));
      expect(result.ok && result.voucher.amount).to.equal(BigInt(amount));
    }
    const longId = `0x${"f".repeat(46)}`;
    const result = decodePaymentSignature(encodeHeader(body({}, { channelId: longId })));
    expect(result.ok && result.voucher.channelId).to.equal(BigInt(longId));
    // Hex digits of any case in ids and signatures; the scheme is checked later, by the gate.
    const upper = body(
      {},
      { channelId: `0x${CH.toString(16).toUpperCase()}`, signature: `0x${SIG.slice(2).toUpperCase()}` },
    );
    expect(reason(decodePaymentSignature(encodeHeader(upper)))).to.equal("ok");
    const exact = decodePaymentSignature(encodeHeader(body({ accepted: { scheme: "exact", network: "x" } })));
    expect(exact.ok && exact.voucher.scheme).to.equal("exact");
  });

  describe("refusals, each with its reason code", () => {
    const cases: [string, string, string][] = [
      ["empty", "", "malformed_header"],
      ["length not a multiple of 4", "abc", "malformed_header"],
      ["characters outside base64", "ab-_", "malformed_header"],
      ["whitespace", `${encodeHeader(body())} `.padEnd(4 * 200, " "), "malformed_header"],
      ["padding in the middle", "ab==ab==", "malformed_header"],
      ["a valid body with one character replaced by '!'", `!${encodeHeader(body()).slice(1)}`, "malformed_header"],
      ["not JSON", Buffer.from("not json!").toString("base64"), "malformed_header"],
      ["JSON null", encodeHeader(null as unknown as object), "malformed_header"],
      ["JSON array", encodeHeader([body()]), "malformed_header"],
      ["JSON string", Buffer.from('"x402"').toString("base64"), "malformed_header"],
      ["over the size cap", "A".repeat(MAX_PAYMENT_HEADER_BYTES + 4), "header_too_large"],
      ["version missing", encodeHeader(body({ x402Version: undefined })), "unsupported_version"],
      ["version 1", encodeHeader(body({ x402Version: 1 })), "unsupported_version"],
      ["version as a string", encodeHeader(body({ x402Version: "2" })), "unsupported_version"],
      ["accepted missing", encodeHeader(body({ accepted: undefined })), "invalid_payload"],
      ["accepted an array", encodeHeader(body({ accepted: [] })), "invalid_payload"],
      ["payload a string", encodeHeader(body({ payload: "x" })), "invalid_payload"],
      ["scheme missing", encodeHeader(body({ accepted: { network: NETWORK } })), "invalid_payload"],
      ["network a number", encodeHeader(body({ accepted: { scheme: "channel", network: 84532 } })), "invalid_payload"],
      [
        "asset a number",
        encodeHeader(body({ accepted: { scheme: "channel", network: NETWORK, asset: 1 } })),
        "invalid_payload",
      ],
      [
        "payTo null",
        encodeHeader(body({ accepted: { scheme: "channel", network: NETWORK, payTo: null } })),
        "invalid_payload",
      ],
      [
        "extra a string",
        encodeHeader(body({ accepted: { scheme: "channel", network: NETWORK, extra: "x" } })),
        "invalid_payload",
      ],
      [
        "contract a number",
        encodeHeader(body({ accepted: { scheme: "channel", network: NETWORK, extra: { contract: 5 } } })),
        "invalid_payload",
      ],
      ["channel id a number", encodeHeader(body({}, { channelId: 5 })), "invalid_payload"],
      ["channel id without 0x", encodeHeader(body({}, { channelId: CH.toString(16) })), "invalid_payload"],
      ["channel id 0X", encodeHeader(body({}, { channelId: `0X${CH.toString(16)}` })), "invalid_payload"],
      ["channel id decimal", encodeHeader(body({}, { channelId: CH.toString() })), "invalid_payload"],
      ["channel id 0x", encodeHeader(body({}, { channelId: "0x" })), "invalid_payload"],
      ["channel id of 47 digits", encodeHeader(body({}, { channelId: `0x1${"0".repeat(46)}` })), "invalid_payload"],
      ["amount a number", encodeHeader(body({}, { amount: 1000 })), "invalid_payload"],
      ["amount negative", encodeHeader(body({}, { amount: "-1" })), "invalid_payload"],
      ["amount with a leading zero", encodeHeader(body({}, { amount: "01000" })), "invalid_payload"],
      ["amount in hex", encodeHeader(body({}, { amount: "0x3e8" })), "invalid_payload"],
      ["amount with exponent", encodeHeader(body({}, { amount: "1e3" })), "invalid_payload"],
      ["amount with decimals", encodeHeader(body({}, { amount: "1000.0" })), "invalid_payload"],
      ["amount above uint96", encodeHeader(body({}, { amount: (MAX_AMOUNT + 1n).toString() })), "invalid_payload"],
      ["amount of 30 digits", encodeHeader(body({}, { amount: "1".repeat(30) })), "invalid_payload"],
      ["signature missing", encodeHeader(body({}, { signature: undefined })), "malformed_signature"],
      ["signature a number", encodeHeader(body({}, { signature: 7 })), "malformed_signature"],
      ["signature of 63 bytes", encodeHeader(body({}, { signature: SIG.slice(0, 128) })), "malformed_signature"],
      ["signature of 66 bytes", encodeHeader(body({}, { signature: `${SIG}00` })), "malformed_signature"],
      ["signature without 0x", encodeHeader(body({}, { signature: SIG.slice(2) })), "malformed_signature"],
      ["signature not hex", encodeHeader(body({}, { signature: `0x${"g".repeat(130)}` })), "malformed_signature"],
    ];
    for (const [name, header, expected] of cases) {
      it(`${name} → ${expected}`, () => {
        expect(reason(decodePaymentSignature(header))).to.equal(expected);
      });
    }

    it("checks the size cap before anything else", () => {
      const big = encodeHeader(body({}, { pad: "x".repeat(6200) }));
      expect(big.length).to.be.greaterThan(MAX_PAYMENT_HEADER_BYTES);
      expect(reason(decodePaymentSignature(big))).to.equal("header_too_large");
      const fits = encodeHeader(body({}, { pad: "x".repeat(5500) }));
      expect(fits.length).to.be.at.most(MAX_PAYMENT_HEADER_BYTES);
      expect(reason(decodePaymentSignature(fits))).to.equal("ok");
    });

    it("reports the first defect in order: version, then payload, then signature", () => {
      const all = body({ x402Version: 1 }, { amount: "x", signature: "x" });
      expect(reason(decodePaymentSignature(encodeHeader(all)))).to.equal("unsupported_version");
      const payload = body({}, { amount: "x", signature: "x" });
      expect(reason(decodePaymentSignature(encodeHeader(payload)))).to.equal("invalid_payload");
    });
  });

  it("uses x402 version 2 and the scheme name channel", () => {
    expect(X402_VERSION).to.equal(2);
    expect(SCHEME).to.equal("channel");
  });

  it("fits the payload of an x402 client that echoes the offer and a 4 KiB resource URL", () => {
    const offer = harness().offer(1_000n);
    const url = `http://127.0.0.1/search?q=${"x".repeat(4096)}`;
    const header = encodePaymentSignature(
      offer,
      { channelId: channelIdHex(CH), amount: "1000", signature: SIG },
      { url, description: "Search" },
    );
    expect(header.length).to.be.at.most(MAX_PAYMENT_HEADER_BYTES);
    expect(reason(decodePaymentSignature(header))).to.equal("ok");
  });

  it("x402's validators refuse the version-1 wire (no transaction, partial accepted), so the checks can fail", async () => {
    const partial = encodeHeader(body());
    expect(() => validPaymentPayload(partial)).to.throw();
    const oldResponse = encodeHeader({
      success: true,
      scheme: "channel",
      network: NETWORK,
      amount: "1000",
      charge: "1000",
    });
    await validSettleResponse(oldResponse).then(
      () => expect.fail("accepted a response without transaction"),
      (error: Error) => expect(error.message).to.match(/invalid data/),
    );
    expect(() => validPaymentRequired(encodeHeader({ x402Version: 2, accepts: [] }))).to.throw();
  });
});

describe("docs/protocol.md matches the code", () => {
  const doc = readFileSync(path.join(__dirname, "..", "..", "docs", "protocol.md"), "utf8");
  const jsonBlocks = [...doc.matchAll(/```json\n([\s\S]*?)\n```/g)].map(
    (m) => JSON.parse(m[1]) as Record<string, unknown>,
  );

  it("states the voucher and receipt type strings, domains and the header cap exactly", () => {
    expect(doc).to.include(VOUCHER_TYPE_STRING);
    expect(doc).to.include(RECEIPT_TYPE_STRING);
    expect(doc).to.include(`{ name: "${DOMAIN_NAME}", version: "${DOMAIN_VERSION}", chainId:`);
    expect(doc).to.include(`{ name: "${RECEIPT_DOMAIN_NAME}", version: "${RECEIPT_DOMAIN_VERSION}", chainId:`);
    expect(doc).to.include(`${MAX_PAYMENT_HEADER_BYTES.toLocaleString("en-US")} bytes`);
    expect(CHANNEL_NONCE_BITS).to.equal(24n);
  });

  it("has examples that x402's validators accept", async () => {
    const required = jsonBlocks.find((b) => "accepts" in b)!;
    validPaymentRequired(encodeHeader(required));
    const response = jsonBlocks.find((b) => "transaction" in b)!;
    expect(await validSettleResponse(encodeHeader(response))).to.deep.equal(response);
  });

  it("has a PAYMENT-SIGNATURE example that decodes to its JSON and carries a valid voucher", () => {
    const line = /^PAYMENT-SIGNATURE: (\S+)$/m.exec(doc);
    expect(line, "example header").to.not.equal(null);
    const header = line![1];
    const example = jsonBlocks.find((b) => "payload" in b);
    expect(decodeHeader(header)).to.deep.equal(example);
    validPaymentPayload(header);
    const decoded = decodePaymentSignature(header);
    if (!decoded.ok) throw new Error(decoded.reason);
    expect(decoded.voucher.channelId).to.equal(CH_DOC);
    expect(fastVerifier()(decoded.voucher.channelId, decoded.voucher.amount, decoded.voucher.signature)).to.equal("ok");
  });

  it("has a PAYMENT-RESPONSE example whose receipt verifies offline for the documented request", async () => {
    const example = jsonBlocks.find((b) => "transaction" in b) as unknown as SettleResponse;
    const offer = (jsonBlocks.find((b) => "accepts" in b) as unknown as PaymentRequired).accepts[0];
    const receipt = example.extra.receipt;
    expect(example.amount).to.equal(receipt.charge);
    expect(receipt.request).to.equal(requestHash("GET", "/weather?city=Lisbon"));
    expect(await verifyReceipt(receipt, offer.extra.receiptSigner, CHAIN_ID, offer.extra.contract)).to.equal(true);
  });

  it("documents every PAYMENT-REQUIRED, offer, channel view and PAYMENT-RESPONSE field the code sends", () => {
    const offer = harness().offer(1n) as unknown as Record<string, unknown>;
    const fields = [
      ...Object.keys(offer).filter((k) => k !== "extra"),
      ...["name", "version", "contract", "pricing", "minDeposit", "minWithdrawDelay", "decimals"].map(
        (k) => `extra.${k}`,
      ),
      "extra.receiptSigner",
      "extra.relay",
      "extra.channelState",
      ...["x402Version", "error", "resource.url", "resource.description", "accepts", "accepted", "resource"],
      ...["deposit", "chargedTotal", "highestAmount", "remaining", "withdrawReadyAt"],
      ...["success", "transaction", "network", "payer", "amount"],
      ...["extra.channelId", "extra.voucherAmount", "extra.chargedTotal", "extra.remaining", "extra.receipt"],
      ...["charge", "voucherAmount", "request", "issuedAt", "signer"],
    ];
    for (const field of fields) expect(doc, field).to.include(`| \`${field}\` |`);
  });
});
