// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {MockFiatToken} from "./MockFiatToken.sol";

/// @title MockEURC
/// @notice Test and local stand-in for Circle's EURC: 6 decimals, the same EIP-712 domain
/// ("EURC", version "2"), EIP-2612 permit and EIP-3009 transfer/receive with authorization, so a
/// channel opens gaslessly in it exactly as in USDC. Anyone can mint.
contract MockEURC is MockFiatToken {
    constructor() MockFiatToken("EURC", "EURC", "2", 6) {}
}
