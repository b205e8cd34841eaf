import { expect } from "chai";
import { hashTypedData, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { parseRate } from "../../src/protocol/price";
import {
  parseQuote,
  QUOTE_NEVER_EXPIRES,
  QUOTE_TYPE_STRING,
  quoteDigest,
  quoteTypedData,
  recoverQuoteSigner,
  signQuote,
  verifyQuote,
  type Quote,
} from "../../src/protocol/quote";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

const KEY: Hex = HARDHAT_KEYS[2];
const SIGNER = privateKeyToAccount(KEY).address;
const CONTRACT: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const EURC: Address = "0x60a3E35Cc302bFA44Cb288Bc5a4F316Fdb1adb42";
const QUOTE: Quote = { token: EURC, rate: parseRate("1.08"), expiry: 1_800_000_000, channelId: 0n };

describe("quotes", () => {
  it("type string and typed data agree, and viem's account signs the same bytes", async () => {
    const typeString = `Quote(${quoteTypedData(1, CONTRACT, QUOTE)
      .types.Quote.map((f) => `${f.type} ${f.name}`)
      .join(",")})`;
    expect(typeString).to.equal(QUOTE_TYPE_STRING);
    const signed = signQuote(KEY, 8453, CONTRACT, QUOTE);
    const viemSignature = await privateKeyToAccount(KEY).signTypedData(quoteTypedData(8453, CONTRACT, QUOTE));
    expect(signed.signature).to.equal(viemSignature);
    expect(signed).to.deep.include({
      token: EURC,
      rate: "1080000000000000000",
      expiry: 1_800_000_000,
      channelId: "0x0",
    });
    expect(signed.signer).to.equal(SIGNER);
  });

  it("verifies its own quotes and refuses any changed field, domain or signer", () => {
    const signed = signQuote(KEY, 8453, CONTRACT, QUOTE);
    expect(verifyQuote(signed, SIGNER, 8453, CONTRACT)).to.equal(true);
    expect(recoverQuoteSigner(8453, CONTRACT, signed)).to.equal(SIGNER);
    expect(verifyQuote({ ...signed, rate: "1080000000000000001" }, SIGNER, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote({ ...signed, expiry: signed.expiry + 1 }, SIGNER, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote({ ...signed, channelId: "0x1" }, SIGNER, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote({ ...signed, token: CONTRACT }, SIGNER, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote(signed, SIGNER, 84532, CONTRACT)).to.equal(false);
    expect(verifyQuote(signed, SIGNER, 8453, EURC)).to.equal(false);
    const other = privateKeyToAccount(HARDHAT_KEYS[3]).address;
    expect(verifyQuote(signed, other, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote({ ...signed, signer: other }, SIGNER, 8453, CONTRACT)).to.equal(false);
  });

  it("binds a quote to a channel, and a channel-life quote never expires", () => {
    const bound = signQuote(KEY, 8453, CONTRACT, { ...QUOTE, channelId: 0xabcn << 24n, expiry: QUOTE_NEVER_EXPIRES });
    expect(parseQuote(bound)).to.deep.equal({ ...QUOTE, channelId: 0xabcn << 24n, expiry: QUOTE_NEVER_EXPIRES });
    expect(verifyQuote(bound, SIGNER, 8453, CONTRACT)).to.equal(true);
    expect(quoteDigest(8453, CONTRACT, parseQuote(bound)!)).to.equal(
      hashTypedData(
        quoteTypedData(8453, CONTRACT, { ...QUOTE, channelId: 0xabcn << 24n, expiry: QUOTE_NEVER_EXPIRES }),
      ),
    );
  });

  it("refuses malformed wire quotes without throwing", () => {
    const signed = signQuote(KEY, 8453, CONTRACT, QUOTE);
    const { r, s } = { r: signed.signature.slice(2, 66), s: signed.signature.slice(66, 130) };
    const highS = (0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n - BigInt(`0x${s}`))
      .toString(16)
      .padStart(64, "0");
    const flippedV = signed.signature.endsWith("1b") ? "1c" : "1b";
    for (const bad of [
      null,
      "quote",
      { ...signed, token: "0x1234" },
      { ...signed, rate: 1.08 },
      { ...signed, rate: "0" },
      { ...signed, rate: "01" },
      { ...signed, expiry: -1 },
      { ...signed, expiry: "1800000000" },
      { ...signed, channelId: "12" },
      { ...signed, signature: "0x1234" },
    ]) {
      expect(parseQuote(bad), JSON.stringify(bad)).to.equal(undefined);
      expect(verifyQuote(bad as never, SIGNER, 8453, CONTRACT)).to.equal(false);
    }
    expect(verifyQuote({ ...signed, signature: `0x${r}${highS}${flippedV}` }, SIGNER, 8453, CONTRACT)).to.equal(false);
    expect(verifyQuote({ ...signed, signature: `0x${r}${s}05` }, SIGNER, 8453, CONTRACT)).to.equal(false);
  });
});
