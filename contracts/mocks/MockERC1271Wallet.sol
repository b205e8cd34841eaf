// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MockERC1271Wallet
/// @notice Test-only smart wallet: EIP-1271 signatures are 65-byte ECDSA signatures by its owner EOA, and the
/// owner can make it call anything (approve, open a channel) through {execute}. Misbehaviour modes let tests
/// check how PaymentChannels treats hostile wallets.
contract MockERC1271Wallet is IERC1271 {
    /// @notice How {isValidSignature} behaves.
    enum Mode {
        Honest,
        WrongMagic,
        Revert,
        BurnGas,
        LongReturn
    }

    /// @notice The EOA whose signatures the wallet accepts and who may call {execute}.
    address public immutable owner;
    /// @notice Current behaviour of {isValidSignature}.
    Mode public mode;

    /// @notice Only the owner may do this.
    error MockERC1271WalletUnauthorized(address caller);
    /// @notice {isValidSignature} was asked to revert.
    error MockERC1271WalletRevert();

    constructor(address walletOwner) {
        owner = walletOwner;
    }

    /// @notice Sets how {isValidSignature} behaves.
    function setMode(Mode newMode) external {
        if (msg.sender != owner) revert MockERC1271WalletUnauthorized(msg.sender);
        mode = newMode;
    }

    /// @notice Calls `target` with `data` from the wallet and bubbles up a revert.
    function execute(address target, bytes calldata data) external returns (bytes memory result) {
        if (msg.sender != owner) revert MockERC1271WalletUnauthorized(msg.sender);
        bool success;
        // solhint-disable-next-line avoid-low-level-calls
        (success, result) = target.call(data);
        if (!success) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        Mode current = mode;
        if (current == Mode.Revert) revert MockERC1271WalletRevert();
        if (current == Mode.BurnGas) {
            uint256 spins;
            while (gasleft() > 0) ++spins;
            return bytes4(uint32(spins));
        }
        if (current == Mode.LongReturn) {
            // The magic value followed by an extra word: a well-formed answer must be exactly 32 bytes.
            assembly ("memory-safe") {
                mstore(0x00, 0x1626ba7e00000000000000000000000000000000000000000000000000000000)
                mstore(0x20, 0)
                return(0x00, 0x40)
            }
        }
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecoverCalldata(hash, signature);
        bool valid = err == ECDSA.RecoverError.NoError && recovered == owner;
        if (!valid) return bytes4(0xffffffff);
        if (current == Mode.WrongMagic) return bytes4(0x1626ba7f);
        // Strict like some real wallets: the call must be exactly the standard ABI encoding.
        if (msg.data.length != 4 + 3 * 32 + ((signature.length + 31) / 32) * 32) return bytes4(0);
        return IERC1271.isValidSignature.selector;
    }
}
