// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

interface IMintableToken {
    function mint(address account, uint256 value) external returns (bool);
    function approve(address spender, uint256 value) external returns (bool);
}

interface IAavePool {
    function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
    function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf)
        external;
}

interface IPositionManager {
    struct MintParams {
        address token0;
        address token1;
        uint24 fee;
        int24 tickLower;
        int24 tickUpper;
        uint256 amount0Desired;
        uint256 amount1Desired;
        uint256 amount0Min;
        uint256 amount1Min;
        address recipient;
        uint256 deadline;
    }

    function mint(MintParams calldata params)
        external
        payable
        returns (uint256 tokenId, uint128 liquidity, uint256 amount0, uint256 amount1);
}

/// Local chain only: seeds many Aave accounts (and LP positions) in a few transactions, for the fleet benchmarks.
/// Collateral is minted here and supplied on each account's behalf; the debt is borrowed on its behalf, which each
/// account allowed beforehand with `approveDelegation` on the debt token (the borrowed funds stay here); an LP
/// position is minted here and sent to its account.
contract FleetSeeder {
    struct Account {
        address owner;
        uint256 supplyAmount;
        uint256 borrowAmount;
    }

    function seedAave(address pool, address collateral, address debt, Account[] calldata accounts) external {
        uint256 total;
        for (uint256 i = 0; i < accounts.length; i++) {
            total += accounts[i].supplyAmount;
        }
        IMintableToken(collateral).mint(address(this), total);
        IMintableToken(collateral).approve(pool, total);
        for (uint256 i = 0; i < accounts.length; i++) {
            Account calldata a = accounts[i];
            IAavePool(pool).supply(collateral, a.supplyAmount, a.owner, 0);
            if (a.borrowAmount > 0) {
                IAavePool(pool).borrow(debt, a.borrowAmount, 2, 0, a.owner);
            }
        }
    }

    function seedLp(address manager, IPositionManager.MintParams[] calldata positions) external {
        for (uint256 i = 0; i < positions.length; i++) {
            IPositionManager.MintParams calldata p = positions[i];
            IMintableToken(p.token0).mint(address(this), p.amount0Desired);
            IMintableToken(p.token1).mint(address(this), p.amount1Desired);
            IMintableToken(p.token0).approve(manager, p.amount0Desired);
            IMintableToken(p.token1).approve(manager, p.amount1Desired);
            IPositionManager(manager).mint(p);
        }
    }
}
