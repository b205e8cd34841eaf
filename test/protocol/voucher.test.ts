import { expect } from "chai";
import { concatHex, numberToHex, type Hex } from "viem";
import { CLAIM_RECORD_SIZE, decodeClaimRecords, encodeClaimItem } from "../../src/protocol/voucher";

describe("ChannelsClaimed records", () => {
  it("unpacks id and cumulative amount, in order, from the first 35 bytes of each claimed item", () => {
    const signature = `0x${"11".repeat(32)}${"22".repeat(32)}1b` as Hex;
    const vouchers = [
      { channelId: (1n << 184n) - 1n, cumulativeAmount: (1n << 96n) - 1n },
      { channelId: 0xabcdefn << 24n, cumulativeAmount: 1n },
      { channelId: 5n, cumulativeAmount: 250_000n },
    ];
    const claims = concatHex(
      vouchers.map((v) => `0x${encodeClaimItem(v, signature).slice(2, 2 + CLAIM_RECORD_SIZE * 2)}` as Hex),
    );
    expect(decodeClaimRecords(claims)).to.deep.equal(
      vouchers.map((v) => ({ channelId: v.channelId, claimed: v.cumulativeAmount })),
    );
    expect(decodeClaimRecords("0x")).to.deep.equal([]);
  });

  it("refuses data that is not whole records", () => {
    const record = concatHex([numberToHex(7n, { size: 23 }), numberToHex(9n, { size: 12 })]);
    expect(decodeClaimRecords(record)).to.deep.equal([{ channelId: 7n, claimed: 9n }]);
    expect(() => decodeClaimRecords(concatHex([record, "0x00"]))).to.throw(/not whole records/);
  });
});
