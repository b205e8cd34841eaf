// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockReentrantToken
/// @notice Test-only ERC-20 that, once armed, calls back into a target (for example PaymentChannels) from
/// inside `transfer` or `transferFrom`, records the outcome and then completes the transfer normally.
contract MockReentrantToken is ERC20 {
    /// @notice Which token function triggers the armed call.
    enum Hook {
        None,
        Transfer,
        TransferFrom
    }

    /// @notice The function that triggers the next re-entrant call; reset to None once it fires.
    Hook public hook;
    /// @notice Contract called from inside the hook.
    address public reentryTarget;
    /// @notice Calldata of the re-entrant call.
    bytes public callData;
    /// @notice Whether the armed call has fired.
    bool public reentered;
    /// @notice Whether the last re-entrant call succeeded.
    bool public lastCallSucceeded;
    /// @notice Return or revert data of the last re-entrant call.
    bytes public lastReturnData;

    /// @notice The armed call fired with this outcome.
    event Reentered(bool success, bytes returnData);

    constructor() ERC20("Reentrant Token", "REENTER") {}

    /// @notice Mints test tokens to `to`.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms a single call of `newTarget` with `data`, fired by the next `trigger` function call.
    function arm(Hook trigger, address newTarget, bytes calldata data) external {
        hook = trigger;
        reentryTarget = newTarget;
        callData = data;
        reentered = false;
    }

    /// @inheritdoc ERC20
    function transfer(address to, uint256 value) public override returns (bool) {
        _maybeReenter(Hook.Transfer);
        return super.transfer(to, value);
    }

    /// @inheritdoc ERC20
    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        _maybeReenter(Hook.TransferFrom);
        return super.transferFrom(from, to, value);
    }

    function _maybeReenter(Hook current) private {
        if (hook != current) return;
        hook = Hook.None;
        // solhint-disable-next-line avoid-low-level-calls
        (bool success, bytes memory returnData) = reentryTarget.call(callData);
        reentered = true;
        lastCallSucceeded = success;
        lastReturnData = returnData;
        emit Reentered(success, returnData);
    }
}
