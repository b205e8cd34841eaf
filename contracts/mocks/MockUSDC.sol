// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {MockFiatToken} from "./MockFiatToken.sol";

/// @title MockUSDC
/// @notice Test and local stand-in for Circle's USDC: 6 decimals, the same EIP-712 domain
/// ("USD Coin", version "2"), EIP-2612 permit and EIP-3009 transfer/receive with authorization,
/// so client code written against it works unchanged against real USDC. Anyone can mint.
contract MockUSDC is MockFiatToken {
    constructor() MockFiatToken("USD Coin", "USDC", "2", 6) {}
}
