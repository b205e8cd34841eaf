// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IPaymentChannels} from "./interfaces/IPaymentChannels.sol";
import {IERC3009} from "./interfaces/IERC3009.sol";

/// @title PaymentChannels
/// @notice One contract holding many unidirectional ERC-20 payment channels. See {IPaymentChannels}.
/// @dev Layout choice: everything a claim needs lives in one storage word per channel (amounts,
/// route, status) and the signer is part of the channel id, so a batch claim touches one cold slot
/// per channel. Payee and token are interned as a "route" index, shared by all channels with the
/// same payee and token.
contract PaymentChannels is IPaymentChannels, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Shortest payer exit delay a channel may choose.
    uint32 public constant MIN_WITHDRAW_DELAY = 15 minutes;
    /// @notice Longest payer exit delay a channel may choose.
    uint32 public constant MAX_WITHDRAW_DELAY = 30 days;
    /// @notice Size in bytes of one {claimBatch} item.
    uint256 public constant BATCH_ITEM_SIZE = 99;
    /// @notice Gas forwarded to an EIP-1271 wallet's `isValidSignature`, so a hostile wallet cannot
    /// consume a whole batch's gas.
    uint256 public constant ERC1271_GAS_LIMIT = 100_000;

    /// @notice keccak256("Voucher(uint256 channelId,uint96 cumulativeAmount)")
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(uint256 channelId,uint96 cumulativeAmount)");
    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    bytes32 private constant NAME_HASH = keccak256("paychan");
    bytes32 private constant VERSION_HASH = keccak256("1");
    bytes32 private constant OPEN_AUTHORIZATION_TYPEHASH = keccak256(
        "OpenChannel(address payee,address signer,uint32 withdrawDelay,bytes32 salt)"
    );
    bytes32 private constant TOPUP_AUTHORIZATION_TYPEHASH = keccak256("TopUpChannel(uint256 channelId,bytes32 salt)");

    /// @dev secp256k1 order / 2. NOTE: a signature with a larger s is a malleable twin and is refused.
    /// @dev Number forms of hashes used inside assembly (which only accepts number constants);
    /// tests check them against VOUCHER_TYPEHASH and the event selectors.
    uint256 private constant VOUCHER_TYPEHASH_WORD = 0xbe6849c7243c454cfa57c6baf0ec66e2ea30a84133e4d1785cf751c28a37aec4;
    uint256 private constant CHANNELS_CLAIMED_TOPIC =
        0x06c59688f587493fe62591606b35216536fc06e9fd4440f27cb22063b3d0b734;
    uint256 private constant CLAIM_SKIPPED_TOPIC = 0xf366a60b0d74f9fa3e487ca1ba9f93f865616232a3cf69b6ff288e448c389c7a;
    /// @dev Each channel's core word lives at storage slot CORE_SLOT_SEED | channelId: no keccak
    /// per access, and the random 72-bit prefix keeps these slots apart from every other variable.
    /// The seed is the top 72 bits of keccak256("paychan.channel.core").
    uint256 private constant CORE_SLOT_SEED = 0xd81335c386da3d631f0000000000000000000000000000000000000000000000;
    uint256 private constant HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant S_MASK = (1 << 255) - 1;

    uint256 private constant STATUS_OPEN = 1;
    uint256 private constant STATUS_CLOSED = 2;
    uint256 private constant AMOUNT_MASK = (1 << 96) - 1;
    uint256 private constant ROUTE_MASK = (1 << 56) - 1;
    uint256 private constant DEPOSIT_SHIFT = 96;
    uint256 private constant ROUTE_SHIFT = 192;
    uint256 private constant STATUS_SHIFT = 248;
    uint256 private constant NONCE_BITS = 24;
    uint256 private constant NONCE_LIMIT = 1 << NONCE_BITS;
    /// @dev A signer record is nonce (bits 0-31) | first payer (bits 32-191).
    uint256 private constant FIRST_PAYER_SHIFT = 32;

    /// @dev The payer's side of a channel; claims never read it. Opening writes nothing here when
    /// the payer is its signer's first payer (the usual case: one payer per session key), so an
    /// open costs two fresh storage words, not three; `payer` is zero then.
    struct Account {
        address payer;
        uint40 withdrawReadyAt;
    }

    /// @dev A (payee, token, withdraw delay) triple shared by channels.
    struct Route {
        address payee;
        uint32 withdrawDelay;
        address token;
    }

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    mapping(uint256 channelId => Account) private _accounts;
    mapping(uint256 route => Route) private _routes;
    mapping(bytes32 routeKey => uint256 route) private _routeOf;
    uint256 private _routeCount;
    mapping(address signer => uint256 record) private _signers;
    mapping(address account => mapping(address token => uint256 amount)) private _owed;

    constructor() {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- open and top up

    /// @inheritdoc IPaymentChannels
    function open(
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 amount
    ) external nonReentrant returns (uint256 channelId) {
        uint256 received = _pull(token, msg.sender, amount);
        return _open(msg.sender, payee, token, signer, withdrawDelay, received);
    }

    /// @inheritdoc IPaymentChannels
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
    ) external nonReentrant returns (uint256 channelId) {
        _tryPermit(token, amount, deadline, v, r, s);
        uint256 received = _pull(token, msg.sender, amount);
        return _open(msg.sender, payee, token, signer, withdrawDelay, received);
    }

    /// @inheritdoc IPaymentChannels
    function openWithAuthorization(
        address payer,
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 amount,
        Authorization calldata authorization
    ) external nonReentrant returns (uint256 channelId) {
        // NOTE: the nonce commits to every channel parameter the token signature does not cover,
        // so whoever submits the authorization can only open the channel the payer asked for.
        bytes32 nonce = openAuthorizationNonce(payee, signer, withdrawDelay, authorization.salt);
        uint256 received = _receiveWithAuthorization(token, payer, amount, nonce, authorization);
        return _open(payer, payee, token, signer, withdrawDelay, received);
    }

    /// @inheritdoc IPaymentChannels
    function topUp(uint256 channelId, uint256 amount) external nonReentrant {
        address token = _topUpToken(channelId, msg.sender);
        _credit(channelId, _pull(token, msg.sender, amount));
    }

    /// @inheritdoc IPaymentChannels
    function topUpWithPermit(
        uint256 channelId,
        uint256 amount,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant {
        address token = _topUpToken(channelId, msg.sender);
        _tryPermit(token, amount, deadline, v, r, s);
        _credit(channelId, _pull(token, msg.sender, amount));
    }

    /// @inheritdoc IPaymentChannels
    function topUpWithAuthorization(
        uint256 channelId,
        uint256 amount,
        Authorization calldata authorization
    ) external nonReentrant {
        address payer = _payerOf(channelId);
        address token = _topUpToken(channelId, payer);
        bytes32 nonce = topUpAuthorizationNonce(channelId, authorization.salt);
        _credit(channelId, _receiveWithAuthorization(token, payer, amount, nonce, authorization));
    }

    // ---------------------------------------------------------------- claims

    /// @inheritdoc IPaymentChannels
    function claim(uint256 channelId, uint96 amount, bytes calldata signature) external nonReentrant {
        (uint256 route, uint256 paid) = _claimOrRevert(channelId, amount, signature);
        _payRoute(route, paid);
    }

    /// @inheritdoc IPaymentChannels
    /// @dev The loop is assembly because it runs once per channel and decides the batch's gas:
    /// per item one cold storage word (read and write), two keccaks, one ecrecover, and 35 bytes
    /// appended to the batch's one {ChannelsClaimed} log.
    /// It applies exactly the checks of {claim} (see {_claimOrRevert}, the readable version).
    // solhint-disable-next-line function-max-lines
    function claimBatch(bytes calldata items) external nonReentrant returns (uint256 claimedCount) {
        if (items.length % BATCH_ITEM_SIZE != 0) revert PaymentChannelsMalformedBatch(items.length);
        bytes32 separator = _domainSeparator();
        uint256 payouts; // memory: (route, total) pairs, one per distinct route, paid after the loop
        uint256 payoutCount;
        assembly ("memory-safe") {
            // Memory: [0x00, 0x60) struct hash input, [0x60, 0xa2) digest input, [0xc0, 0x1a0)
            // ecrecover or EIP-1271 call input, then the ChannelsClaimed log data (offset, length,
            // 35 bytes per claimed item), then the payout table.
            let scratch := mload(0x40)
            let cursor := add(scratch, 0x1e0) // claims data; the log starts at scratch + 0x1a0
            // One spare word past the data: the zero padding written after the loop.
            payouts := add(cursor, and(add(mul(div(items.length, 99), 35), 63), not(31)))
            mstore(scratch, VOUCHER_TYPEHASH_WORD)
            mstore(add(scratch, 0x60), 0x1901000000000000000000000000000000000000000000000000000000000000)
            mstore(add(scratch, 0x62), separator)
            for {
                let item := items.offset
            } lt(item, add(items.offset, items.length)) {
                item := add(item, 99)
            } {
                let channelId := shr(72, calldataload(item))
                let amount := shr(160, calldataload(add(item, 23)))
                let slot := or(CORE_SLOT_SEED, channelId)
                let core := sload(slot)
                // Claimable: open, above what was claimed, within the deposit.
                let valid := and(
                    eq(shr(248, core), 1),
                    and(gt(amount, and(core, AMOUNT_MASK)), iszero(gt(amount, and(shr(96, core), AMOUNT_MASK))))
                )
                if valid {
                    mstore(add(scratch, 0x20), channelId)
                    mstore(add(scratch, 0x40), amount)
                    mstore(add(scratch, 0x82), keccak256(scratch, 0x60))
                    let digest := keccak256(add(scratch, 0x60), 0x42)
                    let r := calldataload(add(item, 35))
                    let vs := calldataload(add(item, 67))
                    let sigS := and(vs, 0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff)
                    valid := 0
                    // NOTE: high-s signatures are malleable twins; they are never accepted.
                    if iszero(gt(sigS, 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0)) {
                        mstore(add(scratch, 0xc0), digest)
                        mstore(add(scratch, 0xe0), add(shr(255, vs), 27))
                        mstore(add(scratch, 0x100), r)
                        mstore(add(scratch, 0x120), sigS)
                        mstore(0x00, 0)
                        pop(staticcall(gas(), 0x01, add(scratch, 0xc0), 0x80, 0x00, 0x20))
                        valid := eq(mload(0x00), shr(24, channelId))
                    }
                    if iszero(valid) {
                        if extcodesize(shr(24, channelId)) {
                            // isValidSignature(bytes32 digest, bytes r ‖ s ‖ v) on the wallet,
                            // with the same gas cap and 32-byte answer as {_isValidERC1271}.
                            mstore(
                                add(scratch, 0xc0),
                                0x1626ba7e00000000000000000000000000000000000000000000000000000000
                            )
                            mstore(add(scratch, 0xc4), digest)
                            mstore(add(scratch, 0xe4), 0x40)
                            mstore(add(scratch, 0x104), 65)
                            mstore(add(scratch, 0x124), r)
                            mstore(add(scratch, 0x144), sigS)
                            mstore(add(scratch, 0x164), shl(248, add(shr(255, vs), 27)))
                            mstore(0x00, 0)
                            if staticcall(ERC1271_GAS_LIMIT, shr(24, channelId), add(scratch, 0xc0), 0xc4, 0x00, 0x20) {
                                valid := and(
                                    eq(returndatasize(), 0x20),
                                    eq(mload(0x00), 0x1626ba7e00000000000000000000000000000000000000000000000000000000)
                                )
                            }
                        }
                    }
                }
                switch valid
                case 1 {
                    sstore(slot, or(and(core, not(AMOUNT_MASK)), amount))
                    calldatacopy(cursor, item, 35)
                    cursor := add(cursor, 35)
                    let paid := sub(amount, and(core, AMOUNT_MASK))
                    let route := and(shr(192, core), 0xffffffffffffff)
                    // Batches are usually one route: test the first entry before searching.
                    let entry := payouts
                    let last := add(payouts, shl(6, payoutCount))
                    if iszero(and(lt(entry, last), eq(mload(entry), route))) {
                        for {} and(lt(entry, last), iszero(eq(mload(entry), route))) {
                            entry := add(entry, 0x40)
                        } {}
                        if eq(entry, last) {
                            mstore(entry, route)
                            mstore(add(entry, 0x20), 0)
                            payoutCount := add(payoutCount, 1)
                        }
                    }
                    mstore(add(entry, 0x20), add(mload(add(entry, 0x20)), paid))
                    claimedCount := add(claimedCount, 1)
                }
                default {
                    // SkipReason, in the order the checks are specified.
                    let reason := 4
                    if gt(amount, and(shr(96, core), AMOUNT_MASK)) {
                        reason := 3
                    }
                    if iszero(gt(amount, and(core, AMOUNT_MASK))) {
                        reason := 2
                    }
                    switch shr(248, core)
                    case 0 {
                        reason := 0
                    }
                    case 2 {
                        reason := 1
                    }
                    mstore(0x00, channelId)
                    mstore(0x20, amount)
                    mstore(0x40, reason)
                    log1(0x00, 0x60, CLAIM_SKIPPED_TOPIC)
                    mstore(0x40, scratch)
                }
            }
            if claimedCount {
                let length := sub(cursor, add(scratch, 0x1e0))
                mstore(add(scratch, 0x1a0), 0x20)
                mstore(add(scratch, 0x1c0), length)
                mstore(cursor, 0) // zero padding up to the next word
                log1(add(scratch, 0x1a0), add(0x40, and(add(length, 31), not(31))), CHANNELS_CLAIMED_TOPIC)
            }
            mstore(0x40, add(payouts, shl(6, payoutCount)))
        }
        for (uint256 k; k < payoutCount; ++k) {
            uint256 route;
            uint256 total;
            assembly ("memory-safe") {
                let entry := add(payouts, shl(6, k))
                route := mload(entry)
                total := mload(add(entry, 0x20))
            }
            _payRoute(route, total);
        }
    }

    /// @inheritdoc IPaymentChannels
    function close(uint256 channelId, uint96 amount, bytes calldata signature) external nonReentrant {
        uint256 core = _loadCore(channelId);
        _requireOpen(channelId, core);
        uint256 route = (core >> ROUTE_SHIFT) & ROUTE_MASK;
        if (msg.sender != _routes[route].payee) revert PaymentChannelsUnauthorized(channelId, msg.sender);
        uint256 paid;
        if (amount > uint96(core)) (, paid) = _claimOrRevert(channelId, amount, signature);
        _closeAndRefund(channelId);
        _payRoute(route, paid);
    }

    // ---------------------------------------------------------------- payer exit

    /// @inheritdoc IPaymentChannels
    function requestWithdrawal(uint256 channelId) external nonReentrant {
        _requireOpen(channelId, _loadCore(channelId));
        Account storage account = _payerAccount(channelId);
        if (account.withdrawReadyAt != 0) revert PaymentChannelsWithdrawalPending(channelId, account.withdrawReadyAt);
        uint256 route = (_loadCore(channelId) >> ROUTE_SHIFT) & ROUTE_MASK;
        uint40 readyAt = uint40(block.timestamp + _routes[route].withdrawDelay);
        account.withdrawReadyAt = readyAt;
        emit WithdrawalRequested(channelId, readyAt);
    }

    /// @inheritdoc IPaymentChannels
    function cancelWithdrawal(uint256 channelId) external nonReentrant {
        _requireOpen(channelId, _loadCore(channelId));
        Account storage account = _payerAccount(channelId);
        if (account.withdrawReadyAt == 0) revert PaymentChannelsNoWithdrawalRequested(channelId);
        account.withdrawReadyAt = 0;
        emit WithdrawalCancelled(channelId);
    }

    /// @inheritdoc IPaymentChannels
    function finalizeWithdrawal(uint256 channelId) external nonReentrant {
        _requireOpen(channelId, _loadCore(channelId));
        uint40 readyAt = _accounts[channelId].withdrawReadyAt;
        if (readyAt == 0) revert PaymentChannelsNoWithdrawalRequested(channelId);
        if (block.timestamp < readyAt) revert PaymentChannelsWithdrawalNotReady(channelId, readyAt, block.timestamp);
        _closeAndRefund(channelId);
    }

    /// @inheritdoc IPaymentChannels
    function withdrawOwed(address token) external nonReentrant {
        uint256 amount = _owed[msg.sender][token];
        if (amount == 0) revert PaymentChannelsNothingOwed(msg.sender, token);
        _owed[msg.sender][token] = 0;
        emit OwedWithdrawn(msg.sender, token, amount);
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IPaymentChannels
    function getChannel(uint256 channelId) external view returns (Channel memory channel) {
        uint256 core = _loadCore(channelId);
        Account memory account = _accounts[channelId];
        Route memory route = _routes[(core >> ROUTE_SHIFT) & ROUTE_MASK];
        channel = Channel({
            payer: core == 0 ? address(0) : _payerOf(channelId),
            payee: route.payee,
            token: route.token,
            signer: core == 0 ? address(0) : _signerOf(channelId),
            deposit: uint96(core >> DEPOSIT_SHIFT),
            claimed: uint96(core),
            withdrawDelay: route.withdrawDelay,
            withdrawReadyAt: account.withdrawReadyAt,
            status: uint8(core >> STATUS_SHIFT)
        });
    }

    /// @inheritdoc IPaymentChannels
    function voucherDigest(uint256 channelId, uint96 amount) external view returns (bytes32) {
        return _voucherDigest(_domainSeparator(), channelId, amount);
    }

    /// @inheritdoc IPaymentChannels
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparator();
    }

    /// @inheritdoc IPaymentChannels
    function nextChannelId(address signer) external view returns (uint256) {
        return (uint256(uint160(signer)) << NONCE_BITS) | uint32(_signers[signer]);
    }

    /// @inheritdoc IPaymentChannels
    function owed(address account, address token) external view returns (uint256) {
        return _owed[account][token];
    }

    /// @inheritdoc IPaymentChannels
    function openAuthorizationNonce(
        address payee,
        address signer,
        uint32 withdrawDelay,
        bytes32 salt
    ) public pure returns (bytes32) {
        return keccak256(abi.encode(OPEN_AUTHORIZATION_TYPEHASH, payee, signer, withdrawDelay, salt));
    }

    /// @inheritdoc IPaymentChannels
    function topUpAuthorizationNonce(uint256 channelId, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(TOPUP_AUTHORIZATION_TYPEHASH, channelId, salt));
    }

    // ---------------------------------------------------------------- internals: channels

    function _open(
        address payer,
        address payee,
        address token,
        address signer,
        uint32 withdrawDelay,
        uint256 received
    ) private returns (uint256 channelId) {
        if (payee == address(0) || token == address(0)) revert PaymentChannelsZeroAddress();
        if (withdrawDelay < MIN_WITHDRAW_DELAY || withdrawDelay > MAX_WITHDRAW_DELAY) {
            revert PaymentChannelsInvalidWithdrawDelay(withdrawDelay);
        }
        if (received == 0 || received > AMOUNT_MASK) revert PaymentChannelsInvalidAmount(received);
        if (signer == address(0)) signer = payer;
        uint256 record = _signers[signer];
        uint256 nonce = uint32(record);
        if (nonce == NONCE_LIMIT) revert PaymentChannelsSignerExhausted(signer);
        // The first payer of a signer is kept with its nonce; only another payer needs its own word.
        address firstPayer = record == 0 ? payer : address(uint160(record >> FIRST_PAYER_SHIFT));
        _signers[signer] = (uint256(uint160(firstPayer)) << FIRST_PAYER_SHIFT) | (nonce + 1);
        channelId = (uint256(uint160(signer)) << NONCE_BITS) | nonce;
        _storeCore(
            channelId,
            (received << DEPOSIT_SHIFT) |
                (_routeFor(payee, token, withdrawDelay) << ROUTE_SHIFT) |
                (STATUS_OPEN << STATUS_SHIFT)
        );
        if (payer != firstPayer) _accounts[channelId].payer = payer;
        emit ChannelOpened(channelId, payer, payee, token, uint96(received), withdrawDelay);
    }

    /// @dev Checks a top-up of `channelId` funded by `payer` and returns the channel's token.
    function _topUpToken(uint256 channelId, address payer) private view returns (address) {
        uint256 core = _loadCore(channelId);
        _requireOpen(channelId, core);
        if (_payerOf(channelId) != payer) revert PaymentChannelsUnauthorized(channelId, payer);
        Account memory account = _accounts[channelId];
        // NOTE: the deliberate rule is that a pending withdrawal freezes the deposit, so the payee's
        // view of what it can still claim never changes during the exit window.
        if (account.withdrawReadyAt != 0) revert PaymentChannelsWithdrawalPending(channelId, account.withdrawReadyAt);
        return _routes[(core >> ROUTE_SHIFT) & ROUTE_MASK].token;
    }

    function _credit(uint256 channelId, uint256 received) private {
        uint256 core = _loadCore(channelId);
        uint256 deposit = ((core >> DEPOSIT_SHIFT) & AMOUNT_MASK) + received;
        if (received == 0 || deposit > AMOUNT_MASK) revert PaymentChannelsInvalidAmount(received);
        _storeCore(channelId, (core & ~(AMOUNT_MASK << DEPOSIT_SHIFT)) | (deposit << DEPOSIT_SHIFT));
        emit ChannelToppedUp(channelId, uint96(received), uint96(deposit));
    }

    function _claimOrRevert(
        uint256 channelId,
        uint96 amount,
        bytes calldata signature
    ) private returns (uint256 route, uint256 paid) {
        uint256 core = _loadCore(channelId);
        _requireOpen(channelId, core);
        uint96 claimed = uint96(core);
        uint96 deposit = uint96(core >> DEPOSIT_SHIFT);
        if (amount <= claimed) revert PaymentChannelsStaleAmount(channelId, amount, claimed);
        if (amount > deposit) revert PaymentChannelsAmountExceedsDeposit(channelId, amount, deposit);
        bytes32 digest = _voucherDigest(_domainSeparator(), channelId, amount);
        if (!_isSignatureBy(_signerOf(channelId), digest, signature)) revert PaymentChannelsInvalidSignature(channelId);
        paid = _recordClaim(channelId, core, amount);
        route = (core >> ROUTE_SHIFT) & ROUTE_MASK;
    }

    /// @dev Stores `amount` as the new cumulative claim and returns the increase.
    function _recordClaim(uint256 channelId, uint256 core, uint256 amount) private returns (uint256 paid) {
        // Cannot underflow: callers checked amount > claimed.
        unchecked {
            paid = amount - (core & AMOUNT_MASK);
        }
        _storeCore(channelId, (core & ~AMOUNT_MASK) | amount);
        emit ChannelClaimed(channelId, uint96(amount));
    }

    function _closeAndRefund(uint256 channelId) private {
        uint256 core = _loadCore(channelId);
        uint96 claimed = uint96(core);
        // Cannot underflow: claims never exceed the deposit.
        uint96 refund;
        unchecked {
            refund = uint96(core >> DEPOSIT_SHIFT) - claimed;
        }
        _storeCore(channelId, (core & ~(uint256(0xff) << STATUS_SHIFT)) | (STATUS_CLOSED << STATUS_SHIFT));
        emit ChannelClosed(channelId, claimed, refund);
        _send(_routes[(core >> ROUTE_SHIFT) & ROUTE_MASK].token, _payerOf(channelId), refund);
    }

    function _payerAccount(uint256 channelId) private view returns (Account storage account) {
        if (msg.sender != _payerOf(channelId)) revert PaymentChannelsUnauthorized(channelId, msg.sender);
        account = _accounts[channelId];
    }

    /// @dev The channel's own payer word if set, else its signer's first payer.
    function _payerOf(uint256 channelId) private view returns (address payer) {
        payer = _accounts[channelId].payer;
        if (payer == address(0)) payer = address(uint160(_signers[_signerOf(channelId)] >> FIRST_PAYER_SHIFT));
    }

    function _requireOpen(uint256 channelId, uint256 core) private pure {
        uint256 status = core >> STATUS_SHIFT;
        if (status == 0) revert PaymentChannelsUnknownChannel(channelId);
        if (status == STATUS_CLOSED) revert PaymentChannelsChannelClosed(channelId);
    }

    function _routeFor(address payee, address token, uint32 withdrawDelay) private returns (uint256 route) {
        bytes32 key = keccak256(abi.encode(payee, token, withdrawDelay));
        route = _routeOf[key];
        if (route == 0) {
            route = ++_routeCount;
            _routeOf[key] = route;
            _routes[route] = Route({payee: payee, withdrawDelay: withdrawDelay, token: token});
        }
    }

    /// @dev claimed (bits 0-95) | deposit (96-191) | route (192-247) | status (248-255); 0 if unknown.
    function _loadCore(uint256 channelId) private view returns (uint256 core) {
        // Ids at or above 2^184 are never issued; they must not alias another channel's slot.
        if (channelId >> 184 != 0) return 0;
        assembly ("memory-safe") {
            core := sload(or(CORE_SLOT_SEED, channelId))
        }
    }

    function _storeCore(uint256 channelId, uint256 core) private {
        assembly ("memory-safe") {
            sstore(or(CORE_SLOT_SEED, channelId), core)
        }
    }

    function _signerOf(uint256 channelId) private pure returns (address) {
        return address(uint160(channelId >> NONCE_BITS));
    }

    // ---------------------------------------------------------------- internals: tokens

    /// @dev Pulls `amount` and returns what actually arrived, so fee-on-transfer tokens never
    /// create unbacked channel balance.
    function _pull(address token, address from, uint256 amount) private returns (uint256) {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(from, address(this), amount);
        return _receivedSince(token, before);
    }

    /// @dev Redeems an EIP-3009 authorization; only this contract can, as it is the recipient.
    function _receiveWithAuthorization(
        address token,
        address payer,
        uint256 amount,
        bytes32 nonce,
        Authorization calldata authorization
    ) private returns (uint256) {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC3009(token).receiveWithAuthorization(
            payer,
            address(this),
            amount,
            authorization.validAfter,
            authorization.validBefore,
            nonce,
            authorization.v,
            authorization.r,
            authorization.s
        );
        return _receivedSince(token, before);
    }

    function _receivedSince(address token, uint256 before) private view returns (uint256) {
        return IERC20(token).balanceOf(address(this)) - before;
    }

    /// @dev A failed permit is ignored: it may have been front-run, and the allowance then decides.
    function _tryPermit(address token, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s) private {
        try IERC20Permit(token).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
    }

    function _payRoute(uint256 route, uint256 amount) private {
        Route memory target = _routes[route];
        _send(target.token, target.payee, amount);
    }

    /// @dev Transfers out; a failed transfer is credited to {owed} instead of reverting, so one
    /// blocklisted or broken recipient cannot block other channels.
    function _send(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        if (!IERC20(token).trySafeTransfer(to, amount)) {
            _owed[to][token] += amount;
            emit PayoutDeferred(to, token, amount);
        }
    }

    // ---------------------------------------------------------------- internals: signatures

    function _domainSeparator() private view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    /// @dev keccak256("\x19\x01" ‖ separator ‖ keccak256(VOUCHER_TYPEHASH ‖ channelId ‖ amount)).
    function _voucherDigest(
        bytes32 separator,
        uint256 channelId,
        uint256 amount
    ) private pure returns (bytes32 digest) {
        bytes32 typeHash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            mstore(add(p, 0x20), channelId)
            mstore(add(p, 0x40), amount)
            let structHash := keccak256(p, 0x60)
            mstore(p, hex"1901")
            mstore(add(p, 0x02), separator)
            mstore(add(p, 0x22), structHash)
            digest := keccak256(p, 0x42)
        }
    }

    /// @dev Verifies a 65-byte, 64-byte compact or EIP-1271 signature.
    function _isSignatureBy(address signer, bytes32 digest, bytes calldata signature) private view returns (bool) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        if (signature.length == 65) {
            r = bytes32(signature[0:32]);
            s = bytes32(signature[32:64]);
            v = uint8(signature[64]);
            // Some signers write the recovery id as 0/1 rather than 27/28; both mean the same.
            if (v < 27) v += 27;
        } else if (signature.length == 64) {
            r = bytes32(signature[0:32]);
            uint256 vs = uint256(bytes32(signature[32:64]));
            s = bytes32(vs & S_MASK);
            v = uint8((vs >> 255) + 27);
        }
        return _isSignatureBy(signer, digest, r, s, v, signature);
    }

    /// @dev ECDSA (low-s only) first; for a signer with code, EIP-1271 with the original bytes.
    function _isSignatureBy(
        address signer,
        bytes32 digest,
        bytes32 r,
        bytes32 s,
        uint8 v,
        bytes memory signature
    ) private view returns (bool) {
        if (uint256(s) <= HALF_CURVE_ORDER && (v == 27 || v == 28)) {
            if (ecrecover(digest, v, r, s) == signer) return true;
        }
        return signer.code.length != 0 && _isValidERC1271(signer, digest, signature);
    }

    function _isValidERC1271(address wallet, bytes32 digest, bytes memory signature) private view returns (bool) {
        bytes memory data = abi.encodeCall(IERC1271.isValidSignature, (digest, signature));
        bool ok;
        bytes32 result;
        // Only the first 32 bytes of the answer are copied, so a wallet cannot make this call
        // expensive by returning a large payload.
        assembly ("memory-safe") {
            ok := staticcall(ERC1271_GAS_LIMIT, wallet, add(data, 0x20), mload(data), 0, 0x20)
            ok := and(ok, eq(returndatasize(), 0x20))
            result := mload(0)
        }
        return ok && bytes4(result) == IERC1271.isValidSignature.selector;
    }
}
