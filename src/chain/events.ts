import type { DecodeEventLogReturnType } from "viem";
import { decodeClaimRecords } from "../protocol/voucher";
import type { paymentChannelsAbi } from "./abi";

/** A decoded event of the PaymentChannels contract. */
export type PaymentChannelsEvent = DecodeEventLogReturnType<typeof paymentChannelsAbi>;

/**
 * The claims an event reports, as channel → new cumulative claimed total: one for ChannelClaimed
 * (claim, close), one per claimed channel for a batch's ChannelsClaimed, none for other events.
 */
export function claimsOfEvent(event: PaymentChannelsEvent): { channelId: bigint; claimed: bigint }[] {
  if (event.eventName === "ChannelClaimed") return [{ channelId: event.args.channelId, claimed: event.args.claimed }];
  if (event.eventName === "ChannelsClaimed") return decodeClaimRecords(event.args.claims);
  return [];
}
