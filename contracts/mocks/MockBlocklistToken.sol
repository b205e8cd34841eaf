// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockBlocklistToken
/// @notice Test-only ERC-20 that, like USDC, reverts every transfer from or to a blocklisted address.
contract MockBlocklistToken is ERC20 {
    /// @notice Whether `account` is blocklisted.
    mapping(address account => bool blocked) public blocklisted;

    /// @notice A transfer touched a blocklisted account.
    error MockBlocklistTokenBlocked(address account);

    constructor() ERC20("Blocklist Token", "BLOCK") {}

    /// @notice Mints test tokens to `to`.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Adds `account` to or removes it from the blocklist.
    function setBlocklisted(address account, bool blocked) external {
        blocklisted[account] = blocked;
    }

    /// @dev Reverts when the sender or the recipient is blocklisted.
    function _update(address from, address to, uint256 value) internal override {
        if (blocklisted[from]) revert MockBlocklistTokenBlocked(from);
        if (blocklisted[to]) revert MockBlocklistTokenBlocked(to);
        super._update(from, to, value);
    }
}
