import type { Address, Hex } from "viem";
import type { ChannelRecord } from "../protocol/channel";
import type { AcceptedVoucher, ChannelLedger, ExactAuthorization, PendingClaim } from "./types";

/*
 * The rows both stores read, with the same column names: uint256 values are text (SQLite: 64 hex
 * digits, PostgreSQL: NUMERIC as decimal), small integers are numbers (SQLite) or decimal text
 * (PostgreSQL BIGINT).
 */

export interface LedgerRow {
  channel_id: string;
  charged_total: string;
  highest_amount: string;
  highest_signature: string | null;
  claimed_amount: string;
}

export interface VoucherRow {
  channel_id: string;
  amount: string;
  signature: string;
  charge: string;
  charged_total: string;
  receipt: string;
  accepted_at: number | string;
}

export interface ChannelRow {
  channel_id: string;
  payer: string;
  payee: string;
  token: string;
  signer: string;
  deposit: string;
  claimed_on_chain: string;
  withdraw_delay: number | string;
  withdraw_ready_at: number | string;
  status: "open" | "closed";
  opened_at_block: string;
  updated_at_block: string;
}

export interface PendingClaimRow {
  tx_hash: string;
  channel_id: string;
  amount: string;
  nonce: number | string;
  sent_at: number | string;
}

export interface AuthorizationRow {
  token: string;
  payer: string;
  nonce: string;
  value: string;
  tx_hash: string | null;
  created_at: number | string;
}

/** Addresses and nonces are stored lowercase, so a key never depends on checksum casing. */
export function authorizationKey(
  token: Address,
  payer: Address,
  nonce: Hex,
): { token: string; payer: string; nonce: string } {
  return { token: token.toLowerCase(), payer: payer.toLowerCase(), nonce: nonce.toLowerCase() };
}

/** Converters of a store's rows, given how it writes a uint256 as text. */
export function rowReaders(big: (text: string) => bigint) {
  return {
    toLedger: (row: LedgerRow): ChannelLedger => ({
      channelId: big(row.channel_id),
      chargedTotal: big(row.charged_total),
      highestAmount: big(row.highest_amount),
      highestSignature: row.highest_signature as Hex | null,
      claimedAmount: big(row.claimed_amount),
    }),
    toVoucher: (row: VoucherRow): AcceptedVoucher => ({
      channelId: big(row.channel_id),
      amount: big(row.amount),
      signature: row.signature as Hex,
      charge: big(row.charge),
      chargedTotal: big(row.charged_total),
      receipt: row.receipt,
      acceptedAt: Number(row.accepted_at),
    }),
    toChannel: (row: ChannelRow): ChannelRecord => ({
      channelId: big(row.channel_id),
      payer: row.payer as Address,
      payee: row.payee as Address,
      token: row.token as Address,
      signer: row.signer as Address,
      deposit: big(row.deposit),
      claimedOnChain: big(row.claimed_on_chain),
      withdrawDelay: Number(row.withdraw_delay),
      withdrawReadyAt: Number(row.withdraw_ready_at),
      status: row.status,
      openedAtBlock: big(row.opened_at_block),
      updatedAtBlock: big(row.updated_at_block),
    }),
    toPendingClaim: (row: PendingClaimRow): PendingClaim => ({
      txHash: row.tx_hash as Hex,
      channelId: big(row.channel_id),
      amount: big(row.amount),
      nonce: Number(row.nonce),
      sentAt: Number(row.sent_at),
    }),
    toAuthorization: (row: AuthorizationRow): ExactAuthorization => ({
      token: row.token as Address,
      payer: row.payer as Address,
      nonce: row.nonce as Hex,
      value: big(row.value),
      txHash: row.tx_hash as Hex | null,
      createdAt: Number(row.created_at),
    }),
  };
}
