/* Errors of a single store write, shared by the SQLite and PostgreSQL stores. */

/**
 * A recordVoucher for a (channel, amount) already stored with a different signature. Only that
 * call is rejected; the stored voucher and the rest of its batch are unaffected.
 */
export class DuplicateVoucherError extends Error {
  constructor(
    readonly channelId: bigint,
    readonly amount: bigint,
  ) {
    super(`voucher ${amount} on channel 0x${channelId.toString(16)} is already stored with another signature`);
    this.name = "DuplicateVoucherError";
  }
}

/** An adjustCharge for a voucher that was never recorded. Only that call is rejected. */
export class VoucherNotFoundError extends Error {
  constructor(
    readonly channelId: bigint,
    readonly amount: bigint,
  ) {
    super(`no voucher ${amount} on channel 0x${channelId.toString(16)} to adjust`);
    this.name = "VoucherNotFoundError";
  }
}
