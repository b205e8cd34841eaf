// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockFeeOnTransferToken
/// @notice Test-only ERC-20 that burns a fee (in basis points, 1% by default) on every transfer; anyone can mint.
contract MockFeeOnTransferToken is ERC20 {
    /// @notice Fee taken from every transfer, in basis points of the amount sent.
    uint256 public feeBps = 100;

    constructor() ERC20("Fee On Transfer", "FOT") {}

    /// @notice Mints test tokens to `to` (no fee).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Sets the transfer fee in basis points (10_000 = everything is burned).
    function setFeeBps(uint256 newFeeBps) external {
        feeBps = newFeeBps;
    }

    /// @dev Transfers between accounts deliver `value - fee` and burn the fee; mints and burns are exact.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = (value * feeBps) / 10_000;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
