import type { Hex } from "viem";
import type { ChannelRecord } from "../../src/protocol/channel";
import type { AcceptedVoucher } from "../../src/store/types";

/** Records for the store tests, at the widths the contract allows. */

export const MAX_CHANNEL_ID = (1n << 184n) - 1n;
export const MAX_AMOUNT = (1n << 96n) - 1n;

/** A 65-byte signature whose bytes all equal `byte`, so different vouchers get different signatures. */
export function sig(byte: number): Hex {
  return `0x${byte.toString(16).padStart(2, "0").repeat(65)}`;
}

export function voucher(channelId: bigint, amount: bigint, extra: Partial<AcceptedVoucher> = {}): AcceptedVoucher {
  return {
    channelId,
    amount,
    signature: sig(Number(amount % 251n)),
    charge: 7n,
    chargedTotal: amount,
    receipt: `receipt:${channelId}:${amount}`,
    acceptedAt: 1_700_000_000_123,
    ...extra,
  };
}

export function channel(channelId: bigint, extra: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    channelId,
    payer: "0x1111111111111111111111111111111111111111",
    payee: "0x2222222222222222222222222222222222222222",
    token: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    signer: "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01",
    deposit: MAX_AMOUNT,
    claimedOnChain: MAX_AMOUNT - 1n,
    withdrawDelay: 86_400,
    withdrawReadyAt: 0,
    status: "open",
    openedAtBlock: 123_456_789n,
    updatedAtBlock: (1n << 64n) + 5n,
    ...extra,
  };
}
