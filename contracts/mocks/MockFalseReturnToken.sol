// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockFalseReturnToken
/// @notice Test-only ERC-20 whose `transfer` returns false without moving tokens while failing is on
/// (the default); `transferFrom` always works, so channels can be funded.
contract MockFalseReturnToken is ERC20 {
    /// @notice Whether `transfer` currently returns false.
    bool public failing = true;

    constructor() ERC20("False Return Token", "FALSE") {}

    /// @notice Mints test tokens to `to`.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Switches the false-returning `transfer` on or off.
    function setFailing(bool newFailing) external {
        failing = newFailing;
    }

    /// @inheritdoc ERC20
    function transfer(address to, uint256 value) public override returns (bool) {
        if (failing) return false;
        return super.transfer(to, value);
    }
}
