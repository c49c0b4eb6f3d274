// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// A Chainlink-style price feed for the local chain. It answers both the AggregatorV3 reads Ballast uses
/// (`latestRoundData`) and the AggregatorV2 read AaveOracle uses (`latestAnswer`). Its owner sets the answer and,
/// for staleness tests, the `updatedAt` time.
contract LocalPriceFeed {
    address public immutable owner;
    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 1;

    int256 private answer_;
    uint256 private updatedAt_;
    uint80 private roundId_;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        owner = msg.sender;
        decimals = decimals_;
        description = description_;
        _set(initialAnswer, block.timestamp);
    }

    function setAnswer(int256 newAnswer) external {
        _set(newAnswer, block.timestamp);
    }

    function setAnswerAt(int256 newAnswer, uint256 updatedAt) external {
        _set(newAnswer, updatedAt);
    }

    function latestAnswer() external view returns (int256) {
        return answer_;
    }

    function latestTimestamp() external view returns (uint256) {
        return updatedAt_;
    }

    function latestRound() external view returns (uint256) {
        return roundId_;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return (roundId_, answer_, updatedAt_, updatedAt_, roundId_);
    }

    function _set(int256 newAnswer, uint256 updatedAt) private {
        require(msg.sender == owner, "LocalPriceFeed: not owner");
        roundId_ += 1;
        answer_ = newAnswer;
        updatedAt_ = updatedAt;
        emit AnswerUpdated(newAnswer, roundId_, updatedAt);
    }
}
