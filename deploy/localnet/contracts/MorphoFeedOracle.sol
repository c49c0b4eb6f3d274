// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

interface IAnswerFeed {
    function decimals() external view returns (uint8);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// A Morpho Blue oracle (IOracle) for the local chain: the collateral token's price in the loan token, from two
/// USD feeds. Per IOracle, `price()` is the value of 10^collateralDecimals base units of collateral in base units of
/// the loan token, scaled by 1e36: collateralUsd / loanUsd · 10^(36 + loanDecimals − collateralDecimals), each USD
/// price being a feed answer over 10^feedDecimals. Rounded down, as Morpho's own Chainlink oracle rounds.
contract MorphoFeedOracle {
    IAnswerFeed public immutable collateralFeed;
    IAnswerFeed public immutable loanFeed;
    uint256 public immutable scaleNumerator;
    uint256 public immutable scaleDenominator;

    constructor(IAnswerFeed collateralFeed_, IAnswerFeed loanFeed_, uint8 collateralDecimals, uint8 loanDecimals) {
        collateralFeed = collateralFeed_;
        loanFeed = loanFeed_;
        // price = collateralAnswer · 10^(36 + loanDec + loanFeedDec) / (loanAnswer · 10^(collateralDec + collFeedDec))
        scaleNumerator = 10 ** (36 + uint256(loanDecimals) + loanFeed_.decimals());
        scaleDenominator = 10 ** (uint256(collateralDecimals) + collateralFeed_.decimals());
    }

    function price() external view returns (uint256) {
        (, int256 collateralAnswer,,,) = collateralFeed.latestRoundData();
        (, int256 loanAnswer,,,) = loanFeed.latestRoundData();
        require(collateralAnswer > 0 && loanAnswer > 0, "MorphoFeedOracle: bad answer");
        return uint256(collateralAnswer) * scaleNumerator / (uint256(loanAnswer) * scaleDenominator);
    }
}
