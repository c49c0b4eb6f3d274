// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The two structs of Morpho Blue's IIrm interface, field for field (their layout fixes the selectors).
struct MarketParams {
    address loanToken;
    address collateralToken;
    address oracle;
    address irm;
    uint256 lltv;
}

struct Market {
    uint128 totalSupplyAssets;
    uint128 totalSupplyShares;
    uint128 totalBorrowAssets;
    uint128 totalBorrowShares;
    uint128 lastUpdate;
    uint128 fee;
}

/// A Morpho Blue interest-rate model (IIrm) for the local chain, linear in utilisation:
/// rate per year = base + slope · totalBorrowAssets / totalSupplyAssets (WAD), returned per second (Morpho
/// compounds it per accrual). Stateless, so `borrowRate` and `borrowRateView` agree.
contract MorphoLinearIrm {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant SECONDS_PER_YEAR = 365 days;

    uint256 public immutable baseRatePerYear;
    uint256 public immutable slopePerYear;

    constructor(uint256 baseRatePerYear_, uint256 slopePerYear_) {
        baseRatePerYear = baseRatePerYear_;
        slopePerYear = slopePerYear_;
    }

    function borrowRate(MarketParams memory marketParams, Market memory market) external view returns (uint256) {
        return borrowRateView(marketParams, market);
    }

    function borrowRateView(MarketParams memory, Market memory market) public view returns (uint256) {
        uint256 utilization = market.totalSupplyAssets == 0
            ? 0
            : uint256(market.totalBorrowAssets) * WAD / market.totalSupplyAssets;
        return (baseRatePerYear + slopePerYear * utilization / WAD) / SECONDS_PER_YEAR;
    }
}
