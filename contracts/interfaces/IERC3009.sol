// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IERC3009
/// @notice The part of EIP-3009 (transfer with authorization) that payment channels use, as
/// implemented by Circle's USDC (FiatToken v2).
interface IERC3009 {
    /// @notice Moves `value` from `from` to `to` (which must be `msg.sender`) with `from`'s signature.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;
}
