// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./VenueMath.sol";

/// A reference perpetual-futures venue for the local chain: one market (WETH/USD) margined and settled in a quote
/// token (USDC), priced by a Chainlink-style feed. The market itself is every trader's counterparty (the owner funds
/// it), so the skew — the sum of all positions — is what it carries:
///
/// - a trade of `sizeDelta` fills at `price · (1 + (skew + sizeDelta/2) / skewScale)` (the average premium over
///   the trade: trades that grow the skew pay, trades that shrink it are paid), plus a fee of `feeBps` of notional;
/// - funding accrues continuously with the skew: longs pay `rate = skew / skewScale · maxFundingRatePerDay / 1 day`
///   of notional per second (shorts receive it; negative when the skew is short), accumulated per unit of size in
///   `fundingIndex` at the feed price of each accrual;
/// - a position's equity is its margin less the funding it owes plus its P&L at the feed price; growing it needs
///   equity ≥ `initialMarginFraction` of notional, and below `maintenanceMarginFraction` of notional anyone may
///   liquidate it at the feed price for a reward of `liquidationRewardBps` of notional (capped at its equity).
///
/// Units: sizes in 1e18 of the underlying (signed, + long); prices, margins and funding in 1e18 USD; fractions and
/// rates in 1e18; token amounts in the quote token's base units.
contract PerpMarket {
    struct Position {
        int256 size;
        uint256 entryPrice;
        int256 margin;
        int256 lastFundingIndex;
    }

    int256 private constant WAD = 1e18;

    address public owner;
    IVenueToken public immutable quoteToken;
    IVenueFeed public immutable feed;
    uint256 private immutable quoteScale;
    uint256 private immutable feedScale;

    uint256 public skewScale;
    uint256 public feeBps;
    uint256 public maxFundingRatePerDay;
    uint256 public initialMarginFraction;
    uint256 public maintenanceMarginFraction;
    uint256 public liquidationRewardBps;

    int256 public skew;
    int256 public fundingIndex;
    uint256 public lastFundingTime;
    mapping(address => Position) private positions_;

    event MarginMoved(address indexed account, int256 amount);
    event PositionModified(address indexed account, int256 sizeDelta, uint256 fillPrice, uint256 fee, int256 size);
    event Liquidated(address indexed account, address indexed liquidator, int256 size, uint256 price, uint256 reward);

    constructor(
        address quoteToken_,
        uint8 quoteDecimals,
        address feed_,
        uint256 skewScale_,
        uint256 feeBps_,
        uint256 maxFundingRatePerDay_,
        uint256 initialMarginFraction_,
        uint256 maintenanceMarginFraction_,
        uint256 liquidationRewardBps_
    ) {
        require(maintenanceMarginFraction_ < initialMarginFraction_, "PerpMarket: margins");
        owner = msg.sender;
        quoteToken = IVenueToken(quoteToken_);
        feed = IVenueFeed(feed_);
        quoteScale = 10 ** (18 - quoteDecimals);
        feedScale = 10 ** (18 - IVenueFeed(feed_).decimals());
        skewScale = skewScale_;
        feeBps = feeBps_;
        maxFundingRatePerDay = maxFundingRatePerDay_;
        initialMarginFraction = initialMarginFraction_;
        maintenanceMarginFraction = maintenanceMarginFraction_;
        liquidationRewardBps = liquidationRewardBps_;
        lastFundingTime = block.timestamp;
    }

    // --- trading ------------------------------------------------------------------------------------------------

    function depositMargin(uint256 amount) external {
        require(quoteToken.transferFrom(msg.sender, address(this), amount), "PerpMarket: transfer failed");
        positions_[msg.sender].margin += int256(amount * quoteScale);
        emit MarginMoved(msg.sender, int256(amount));
    }

    /// Withdraw `amount` quote base units of margin; an open position must keep its initial margin.
    function withdrawMargin(uint256 amount) external {
        _accrue();
        Position storage p = positions_[msg.sender];
        _settleFunding(p);
        p.margin -= int256(amount * quoteScale);
        require(p.margin >= 0, "PerpMarket: withdraws more than the margin");
        if (p.size != 0) {
            require(_equity(p, oraclePrice()) >= _requirement(p.size, oraclePrice(), initialMarginFraction),
                    "PerpMarket: below initial margin");
        }
        require(quoteToken.transfer(msg.sender, amount), "PerpMarket: transfer failed");
        emit MarginMoved(msg.sender, -int256(amount));
    }

    /// Change the caller's position by `sizeDelta` at no worse than `acceptablePrice` (a buy fills at or below it,
    /// a sell at or above it).
    function modifyPosition(int256 sizeDelta, uint256 acceptablePrice) external {
        require(sizeDelta != 0, "PerpMarket: zero size");
        _accrue();
        Position storage p = positions_[msg.sender];
        _settleFunding(p);
        uint256 price = oraclePrice();
        uint256 fill = _fillPrice(price, sizeDelta);
        if (sizeDelta > 0) require(fill <= acceptablePrice, "PerpMarket: fill price above acceptable");
        else require(fill >= acceptablePrice, "PerpMarket: fill price below acceptable");

        int256 old = p.size;
        int256 next = old + sizeDelta;
        uint256 fee = (_abs(sizeDelta) * fill / 1e18) * feeBps / 10_000;
        p.margin -= int256(fee);
        if (old == 0 || (old > 0) == (sizeDelta > 0)) {
            // Growing (or opening): the entry is the size-weighted average.
            p.entryPrice = (_abs(old) * p.entryPrice + _abs(sizeDelta) * fill) / _abs(next);
        } else {
            // Reducing, closing or flipping: realise the P&L of the part closed at the fill price.
            uint256 closed = _min(_abs(sizeDelta), _abs(old));
            int256 pnl = int256(closed) * (int256(fill) - int256(p.entryPrice)) / WAD;
            p.margin += old > 0 ? pnl : -pnl;
            if (next == 0) p.entryPrice = 0;
            else if ((next > 0) != (old > 0)) p.entryPrice = fill;
        }
        p.size = next;
        skew += sizeDelta;
        if (_abs(next) > _abs(old)) {
            require(_equity(p, price) >= _requirement(next, price, initialMarginFraction),
                    "PerpMarket: below initial margin");
        } else {
            require(p.margin >= 0 || next != 0, "PerpMarket: negative margin");
            require(next == 0 || _equity(p, price) >= _requirement(next, price, maintenanceMarginFraction),
                    "PerpMarket: below maintenance margin");
        }
        emit PositionModified(msg.sender, sizeDelta, fill, fee, next);
    }

    /// Close `account`'s position at the feed price when its equity is below maintenance margin; the caller
    /// receives the reward, the market keeps the rest of the equity. Returns the reward (quote base units).
    function liquidate(address account) external returns (uint256 reward) {
        _accrue();
        Position storage p = positions_[account];
        require(p.size != 0, "PerpMarket: no position");
        uint256 price = oraclePrice();
        int256 equity = _equity(p, price) - _owedFunding(p);
        require(equity < _requirement(p.size, price, maintenanceMarginFraction), "PerpMarket: above maintenance");
        uint256 notional = _abs(p.size) * price / 1e18;
        uint256 rewardWad = notional * liquidationRewardBps / 10_000;
        if (equity <= 0) rewardWad = 0;
        else if (rewardWad > uint256(equity)) rewardWad = uint256(equity);
        int256 size = p.size;
        skew -= size;
        delete positions_[account];
        reward = rewardWad / quoteScale;
        if (reward > 0) require(quoteToken.transfer(msg.sender, reward), "PerpMarket: transfer failed");
        emit Liquidated(account, msg.sender, size, price, reward);
    }

    // --- owner --------------------------------------------------------------------------------------------------

    function setParameters(uint256 skewScale_, uint256 feeBps_, uint256 maxFundingRatePerDay_) external {
        require(msg.sender == owner, "PerpMarket: not owner");
        _accrue();
        skewScale = skewScale_;
        feeBps = feeBps_;
        maxFundingRatePerDay = maxFundingRatePerDay_;
    }

    // --- views --------------------------------------------------------------------------------------------------

    /// The account's size, entry price, margin (funding not yet settled) and the funding it owes now (+ owes).
    function position(address account)
        external
        view
        returns (int256 size, uint256 entryPrice, int256 margin, int256 accruedFunding)
    {
        Position storage p = positions_[account];
        return (p.size, p.entryPrice, p.margin, _owedFundingAt(p, _currentFundingIndex()));
    }

    /// Margin less owed funding plus P&L at the feed price, 1e18 USD.
    function equity(address account) external view returns (int256) {
        Position storage p = positions_[account];
        return _equity(p, oraclePrice()) - _owedFundingAt(p, _currentFundingIndex());
    }

    /// The feed price at which the position's equity falls to maintenance margin (0: none), 1e18 USD.
    function liquidationPrice(address account) external view returns (uint256) {
        Position storage p = positions_[account];
        if (p.size == 0) return 0;
        int256 margin = p.margin - _owedFundingAt(p, _currentFundingIndex());
        int256 m = int256(maintenanceMarginFraction);
        // margin + q·(P − entry) = m·|q|·P  ⇒  P = (q·entry − margin) / (q − m·|q|)
        int256 denominator = p.size - (m * int256(_abs(p.size))) / WAD;
        if (denominator == 0) return 0;
        int256 price = ((p.size * int256(p.entryPrice)) / WAD - margin) * WAD / denominator;
        return price > 0 ? uint256(price) : 0;
    }

    /// The price a trade of `sizeDelta` would fill at now, 1e18 USD.
    function fillPrice(int256 sizeDelta) external view returns (uint256) {
        return _fillPrice(oraclePrice(), sizeDelta);
    }

    /// The funding rate now: the fraction of notional a long pays per second, 1e18 (negative: longs receive).
    function fundingRatePerSecond() public view returns (int256) {
        return skew * int256(maxFundingRatePerDay) / int256(skewScale) / 1 days;
    }

    /// Everything the agent reads each cycle, in one call.
    function marketState()
        external
        view
        returns (
            uint256 price,
            int256 skew_,
            uint256 skewScale_,
            uint256 feeBps_,
            int256 fundingRate,
            uint256 initialMarginFraction_,
            uint256 maintenanceMarginFraction_
        )
    {
        return (oraclePrice(), skew, skewScale, feeBps, fundingRatePerSecond(), initialMarginFraction,
                maintenanceMarginFraction);
    }

    function oraclePrice() public view returns (uint256) {
        (, int256 answer,,,) = feed.latestRoundData();
        require(answer > 0, "PerpMarket: bad feed answer");
        return uint256(answer) * feedScale;
    }

    // --- internals ----------------------------------------------------------------------------------------------

    function _currentFundingIndex() private view returns (int256) {
        uint256 elapsed = block.timestamp - lastFundingTime;
        if (elapsed == 0 || skew == 0) return fundingIndex;
        // One division keeps the accrual exact to the wei: skew·rateMax·price·dt / (skewScale · 1 day · 1e18).
        return fundingIndex + skew * int256(maxFundingRatePerDay) * int256(oraclePrice()) * int256(elapsed)
            / (int256(skewScale) * 1 days * WAD);
    }

    function _accrue() private {
        fundingIndex = _currentFundingIndex();
        lastFundingTime = block.timestamp;
    }

    function _owedFundingAt(Position storage p, int256 index) private view returns (int256) {
        return p.size * (index - p.lastFundingIndex) / WAD;
    }

    function _owedFunding(Position storage p) private view returns (int256) {
        return _owedFundingAt(p, fundingIndex);
    }

    function _settleFunding(Position storage p) private {
        p.margin -= _owedFunding(p);
        p.lastFundingIndex = fundingIndex;
    }

    /// Margin plus P&L at `price` (funding must be settled, or subtracted by the caller).
    function _equity(Position storage p, uint256 price) private view returns (int256) {
        return p.margin + p.size * (int256(price) - int256(p.entryPrice)) / WAD;
    }

    function _requirement(int256 size, uint256 price, uint256 fraction) private pure returns (int256) {
        return int256(_abs(size) * price / 1e18 * fraction / 1e18);
    }

    function _fillPrice(uint256 price, int256 sizeDelta) private view returns (uint256) {
        int256 premium = (skew + sizeDelta / 2) * WAD / int256(skewScale);
        return uint256(int256(price) * (WAD + premium) / WAD);
    }

    function _abs(int256 x) private pure returns (uint256) {
        return uint256(x >= 0 ? x : -x);
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }
}
