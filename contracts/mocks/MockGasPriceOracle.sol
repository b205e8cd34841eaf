// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title MockGasPriceOracle
/// @notice Test-only stand-in for the OP-stack GasPriceOracle predeploy (0x420000000000000000000000000000000000000F),
/// installed with `hardhat_setCode` so code estimating L1 data fees can run on a local node. It prices an L2
/// transaction like the pre-Ecotone oracle with fixed parameters: (16 gas per byte + overhead) x l1BaseFee.
/// @dev Only the runtime code is installed (no constructor runs under hardhat_setCode), so every parameter is a
/// constant. viem's `estimateL1Fee` calls {getL1Fee} only; the other views complete the oracle's read interface.
contract MockGasPriceOracle {
    uint256 private constant L1_BASE_FEE = 20 gwei;
    uint256 private constant OVERHEAD = 188;
    uint256 private constant SCALAR = 1_000_000;
    uint256 private constant DECIMALS = 6;

    /// @notice L1 base fee the mock reports, wei.
    function l1BaseFee() external pure returns (uint256) {
        return L1_BASE_FEE;
    }

    /// @notice Fixed L1 gas added to every transaction.
    function overhead() external pure returns (uint256) {
        return OVERHEAD;
    }

    /// @notice Scalar applied to the L1 fee, with {decimals} decimals (1.0 here).
    function scalar() external pure returns (uint256) {
        return SCALAR;
    }

    /// @notice Decimals of {scalar}.
    function decimals() external pure returns (uint256) {
        return DECIMALS;
    }

    /// @notice L1 gas of a serialized transaction: 16 per byte (no zero-byte discount) plus the overhead.
    function getL1GasUsed(bytes calldata data) public pure returns (uint256) {
        return data.length * 16 + OVERHEAD;
    }

    /// @notice L1 data fee of a serialized transaction, wei.
    function getL1Fee(bytes calldata data) external pure returns (uint256) {
        return (getL1GasUsed(data) * L1_BASE_FEE * SCALAR) / 10 ** DECIMALS;
    }
}
