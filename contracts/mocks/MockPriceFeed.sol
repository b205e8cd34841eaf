// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title MockPriceFeed
/// @notice Test and local stand-in for a Chainlink price feed (AggregatorV3Interface): anyone sets
/// the answer and its timestamp (like the mock tokens' mint), so tests can move the rate or let it
/// go stale. It has no owner because it is deployed through the deterministic CREATE2 deployer.
contract MockPriceFeed {
    /// @notice Decimals of {latestRoundData}'s answer (Chainlink's USD feeds use 8).
    uint8 public immutable decimals;
    /// @notice What the feed prices, e.g. "EUR / USD".
    string public description;
    /// @notice The AggregatorV3Interface version this mock follows.
    // solhint-disable-next-line const-name-snakecase
    uint256 public constant version = 4;

    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
    }

    uint80 private _latestRound;
    mapping(uint80 roundId => Round round) private _rounds;

    /// @notice A new answer was set.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    /// @notice The round was never set.
    error MockPriceFeedNoData(uint80 roundId);
    /// @notice `updatedAt` lies in the future.
    error MockPriceFeedFutureTimestamp(uint256 updatedAt);

    /// @param decimals_ Decimals of the answers.
    /// @param description_ What the feed prices.
    /// @param initialAnswer First answer, stamped with the deployment block's time.
    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        _setAnswer(initialAnswer, block.timestamp);
    }

    /// @notice Sets a new answer, stamped now.
    function setAnswer(int256 answer) external {
        _setAnswer(answer, block.timestamp);
    }

    /// @notice Sets a new answer with an explicit `updatedAt` (for example in the past, to make
    /// the feed stale).
    function setAnswerAt(int256 answer, uint256 updatedAt) external {
        if (updatedAt > block.timestamp) revert MockPriceFeedFutureTimestamp(updatedAt);
        _setAnswer(answer, updatedAt);
    }

    /// @notice AggregatorV3Interface: the latest round.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(_latestRound);
    }

    /// @notice AggregatorV3Interface: one round.
    function getRoundData(
        uint80 roundId
    ) public view returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound) {
        Round storage round = _rounds[roundId];
        if (round.updatedAt == 0) revert MockPriceFeedNoData(roundId);
        return (roundId, round.answer, round.startedAt, round.updatedAt, roundId);
    }

    /// @notice AggregatorV2: the latest answer.
    function latestAnswer() external view returns (int256) {
        return _rounds[_latestRound].answer;
    }

    /// @notice AggregatorV2: when the latest answer was set.
    function latestTimestamp() external view returns (uint256) {
        return _rounds[_latestRound].updatedAt;
    }

    function _setAnswer(int256 answer, uint256 updatedAt) private {
        uint80 roundId = ++_latestRound;
        _rounds[roundId] = Round(answer, updatedAt, updatedAt);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
