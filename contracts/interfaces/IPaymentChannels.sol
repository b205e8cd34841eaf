// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IPaymentChannels
/// @notice Unidirectional ERC-20 payment channels. A payer locks tokens for one payee; the payer (or
/// a session key) signs EIP-712 vouchers for the cumulative amount owed; the payee claims the
/// latest voucher whenever it wants, alone or batched with many other channels.
///
/// @dev Channel ids are `uint256(signer) << 24 | nonce`, where `nonce` counts the channels opened
/// for that signer. The id therefore names the voucher signer itself, which lets a claim verify a
/// voucher from a single storage slot, and an id is never issued twice: a closed channel's id can
/// never be reopened. Ids fit in 23 bytes.
///
/// Voucher (EIP-712, domain name "paychan", version "1", this chain id, this contract):
///   Voucher(uint256 channelId,uint96 cumulativeAmount)
interface IPaymentChannels {
    /// @notice The full state of a channel, as returned by {getChannel}.
    /// @param payer Funds the channel and receives the unspent deposit when it closes.
    /// @param payee Receives claimed amounts.
    /// @param token The ERC-20 token held by the channel.
    /// @param signer The key that signs vouchers: a session key, or the payer (EOA or EIP-1271 wallet).
    /// @param deposit Total amount deposited (open plus top-ups).
    /// @param claimed Cumulative amount paid to the payee so far.
    /// @param withdrawDelay Seconds between a withdrawal request and the earliest finalization.
    /// @param withdrawReadyAt Time from which a requested withdrawal can be finalized; 0 if none.
    /// @param status 0 unknown, 1 open, 2 closed.
    struct Channel {
        address payer;
        address payee;
        address token;
        address signer;
        uint96 deposit;
        uint96 claimed;
        uint32 withdrawDelay;
        uint40 withdrawReadyAt;
        uint8 status;
    }

    /// @notice An EIP-3009 `receiveWithAuthorization` signed by the payer. The authorization's nonce
    /// is not sent: the contract derives it from the channel parameters and `salt`.
    struct Authorization {
        uint256 validAfter;
        uint256 validBefore;
        bytes32 salt;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice Why a batch item was skipped (see {ClaimSkipped}).
    enum SkipReason {
        UnknownChannel,
        ChannelClosed,
        StaleAmount,
        AmountExceedsDeposit,
        InvalidSignature
    }

    /// @notice A channel was opened.
    event ChannelOpened(
        uint256 indexed channelId,
        address indexed payer,
        address indexed payee,
        address token,
        uint96 deposit,
        uint32 withdrawDelay
    );
    /// @notice Tokens were added to a channel; `deposit` is the new total.
    event ChannelToppedUp(uint256 indexed channelId, uint96 amount, uint96 deposit);
    /// @notice A voucher was claimed by {claim} or {close}: `claimed` is the channel's new cumulative
    /// total. The amount paid is the increase over the channel's previous claimed total (0 at open).
    event ChannelClaimed(uint256 indexed channelId, uint96 claimed);
    /// @notice The channels claimed by one {claimBatch}, in item order. `claims` packs 35 bytes per
    /// claimed channel: channelId (23 bytes) | new cumulative claimed total (12 bytes), that is the
    /// first 35 bytes of each claimed item.
    /// @dev One log per batch instead of one per channel: 280 gas of log data per channel instead
    /// of a whole log (~1,260 gas). Skipped items are reported by {ClaimSkipped}.
    event ChannelsClaimed(bytes claims);
    /// @notice A batch item was not claimed; the other items of the batch were processed.
    event ClaimSkipped(uint256 channelId, uint96 amount, SkipReason reason);
    /// @notice The payer asked to withdraw; the payee can claim until `readyAt` and after, until finalized.
    event WithdrawalRequested(uint256 indexed channelId, uint40 readyAt);
    /// @notice The payer cancelled a withdrawal request.
    event WithdrawalCancelled(uint256 indexed channelId);
    /// @notice A channel closed: the payee received `claimed` in total, the payer got `refunded` back.
    event ChannelClosed(uint256 indexed channelId, uint96 claimed, uint96 refunded);
    /// @notice A payout or refund transfer failed (for example a blocklisted address); the amount is kept for
    /// the account to pull with {withdrawOwed}.
    event PayoutDeferred(address indexed account, address indexed token, uint256 amount);
    /// @notice An account pulled deferred payouts or refunds.
    event OwedWithdrawn(address indexed account, address indexed token, uint256 amount);

    /// @notice The channel does not exist.
    error PaymentChannelsUnknownChannel(uint256 channelId);
    /// @notice The channel is closed.
    error PaymentChannelsChannelClosed(uint256 channelId);
    /// @notice The caller may not perform this action on the channel.
    error PaymentChannelsUnauthorized(uint256 channelId, address caller);
    /// @notice The withdraw delay is outside [MIN_WITHDRAW_DELAY, MAX_WITHDRAW_DELAY].
    error PaymentChannelsInvalidWithdrawDelay(uint32 withdrawDelay);
    /// @notice A zero payee or token address was given.
    error PaymentChannelsZeroAddress();
    /// @notice The amount received is zero or the deposit would exceed 2^96 - 1.
    error PaymentChannelsInvalidAmount(uint256 amount);
    /// @notice The signer has used all 2^24 channel nonces.
    error PaymentChannelsSignerExhausted(address signer);
    /// @notice The voucher amount is not above what was already claimed.
    error PaymentChannelsStaleAmount(uint256 channelId, uint96 amount, uint96 claimed);
    /// @notice The voucher amount exceeds the channel's deposit.
    error PaymentChannelsAmountExceedsDeposit(uint256 channelId, uint96 amount, uint96 deposit);
    /// @notice The voucher signature is malformed, high-s, or not by the channel's signer.
    error PaymentChannelsInvalidSignature(uint256 channelId);
    /// @notice A withdrawal is already pending, or (for top-ups) a pending withdrawal forbids it.
    error PaymentChannelsWithdrawalPending(uint256 channelId, uint40 readyAt);
    /// @notice No withdrawal was requested.
    error PaymentChannelsNoWithdrawalRequested(uint256 channelId);
    /// @notice The withdrawal delay has not elapsed.
    error PaymentChannelsWithdrawalNotReady(uint256 channelId, uint40 readyAt, uint256 nowTime);
    /// @notice The batch payload length is not a multiple of the item size.
    error PaymentChannelsMalformedBatch(uint256 length);
    /// @notice Nothing is owed to the caller in this token.
    error PaymentChannelsNothingOwed(address account, address token);

    /// @notice Opens a channel funded by `msg.sender` through a prior ERC-20 approval.
    /// @param payee Receives the claims.
    /// @param token ERC-20 token to lock.
    /// @param signer Voucher signer; zero means the payer itself.
    /// @param withdrawDelay Payer exit delay in seconds.
    /// @param amount Amount to pull from the payer; the channel is credited with what actually arrives.
    /// @return channelId The new channel's id.
    function open(
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 amount
    ) external returns (uint256 channelId);

    /// @notice Like {open}, with an EIP-2612 permit instead of a prior approval.
    /// @dev A permit that fails (for example because it was front-run) is ignored; the transfer then
    /// relies on the existing allowance.
    function openWithPermit(
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint256 channelId);

    /// @notice Opens a channel for `payer` with an EIP-3009 `receiveWithAuthorization`, so a relayer
    /// can pay the gas for a payer who holds no ETH.
    /// @dev The authorization's nonce must be {openAuthorizationNonce} of the same parameters, so a
    /// relayer or front-runner cannot change the payee, signer or delay. Only this contract can
    /// redeem a `receiveWithAuthorization`, so the transfer itself cannot be front-run.
    function openWithAuthorization(
        address payer,
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 amount,
        Authorization calldata authorization
    ) external returns (uint256 channelId);

    /// @notice Adds `amount` from the payer (`msg.sender`) through a prior approval.
    /// @dev Rule: a top-up is refused while a withdrawal is pending; the payer cancels it first.
    function topUp(uint256 channelId, uint256 amount) external;

    /// @notice Like {topUp}, with an EIP-2612 permit.
    function topUpWithPermit(
        uint256 channelId,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;

    /// @notice Tops up with an EIP-3009 `receiveWithAuthorization` signed by the channel's payer;
    /// the nonce must be {topUpAuthorizationNonce}.
    function topUpWithAuthorization(uint256 channelId, uint256 amount, Authorization calldata authorization) external;

    /// @notice Claims one voucher and pays the increase to the payee. Anyone may submit it.
    /// @param signature 65-byte (r, s, v), 64-byte EIP-2098 compact, or any EIP-1271 signature.
    function claim(uint256 channelId, uint96 amount, bytes calldata signature) external;

    /// @notice Claims many vouchers (any payees, any tokens) and pays them out in this transaction.
    /// @dev `items` is a tight concatenation of 99-byte items:
    ///   channelId (23 bytes) | cumulativeAmount (12 bytes) | r (32 bytes) | yParityAndS (32 bytes).
    /// Claimed items are reported together by one {ChannelsClaimed}; invalid items are skipped
    /// with {ClaimSkipped}; they never revert the batch.
    /// @return claimedCount How many items were claimed.
    function claimBatch(bytes calldata items) external returns (uint256 claimedCount);

    /// @notice Payee-initiated close: claims a final voucher (if `amount` exceeds what was claimed)
    /// and refunds the rest to the payer, in one transaction.
    /// @param amount Final cumulative amount, or 0 to close without a new voucher.
    function close(uint256 channelId, uint96 amount, bytes calldata signature) external;

    /// @notice Starts the payer's exit; it can be finalized after the channel's withdraw delay.
    function requestWithdrawal(uint256 channelId) external;

    /// @notice Cancels a pending withdrawal request.
    function cancelWithdrawal(uint256 channelId) external;

    /// @notice Closes the channel after the delay and returns deposit minus claimed to the payer.
    /// @dev Anyone may call it (so a relayer can finish a gasless payer's exit); funds go to the payer.
    function finalizeWithdrawal(uint256 channelId) external;

    /// @notice Pulls payouts or refunds owed to `msg.sender` that could not be transferred when due.
    function withdrawOwed(address token) external;

    /// @notice The full state of a channel.
    function getChannel(uint256 channelId) external view returns (Channel memory);

    /// @notice The EIP-712 digest a voucher for (`channelId`, `amount`) must sign.
    function voucherDigest(uint256 channelId, uint96 amount) external view returns (bytes32);

    /// @notice The EIP-712 domain separator of this contract on this chain.
    function domainSeparator() external view returns (bytes32);

    /// @notice The id the next channel opened for `signer` will get.
    function nextChannelId(address signer) external view returns (uint256);

    /// @notice Amount owed to `account` in `token` after failed transfers.
    function owed(address account, address token) external view returns (uint256);

    /// @notice The EIP-3009 nonce a payer signs to authorize {openWithAuthorization}.
    function openAuthorizationNonce(
        address payee,
        address signer,
        uint32 withdrawDelay,
        bytes32 salt
    ) external pure returns (bytes32);

    /// @notice The EIP-3009 nonce a payer signs to authorize {topUpWithAuthorization}.
    function topUpAuthorizationNonce(uint256 channelId, bytes32 salt) external pure returns (bytes32);
}
