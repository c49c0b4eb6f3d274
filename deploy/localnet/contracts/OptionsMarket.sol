// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

import "./VenueMath.sol";

/// A reference options venue for the local chain: European, cash-settled calls and puts on one underlying (WETH),
/// paid and settled in a quote token (USDC), bought from and sold back to a pool the owner funds. The price is
/// Black-Scholes (no dividend yield) computed on-chain from the feed's spot, the series' strike and time to expiry,
/// an implied vol per series and one rate the owner sets; a buyer pays it plus a fee, a seller receives it less the
/// fee. Holders can only be long (sell closes what one bought). At expiry anyone settles a series at the feed's
/// price and holders redeem their intrinsic value.
///
/// Units: amounts of options in 1e18 of the underlying; strikes, prices, vols, rates and times in 1e18 fixed point
/// (USD, annual fractions, years of 365 days); payments in the quote token's base units.
contract OptionsMarket {
    using VenueMath for int256;

    struct Series {
        bool isCall;
        uint64 expiry;
        uint256 strike;
        uint256 vol;
        bool settled;
        uint256 settlementPrice;
        uint256 openInterest;
    }

    int256 private constant WAD = 1e18;
    uint256 public constant SECONDS_PER_YEAR = 365 days;

    address public owner;
    IVenueToken public immutable quoteToken;
    IVenueFeed public immutable feed;
    uint256 private immutable quoteScale; // 1e18 / 10**quoteDecimals
    uint256 private immutable feedScale; // 1e18 / 10**feedDecimals
    uint256 public rate; // annual, continuously compounded, 1e18
    uint256 public feeBps;

    Series[] private series_;
    mapping(uint256 => mapping(address => uint256)) public balanceOf;

    event SeriesListed(uint256 indexed seriesId, bool isCall, uint256 strike, uint64 expiry, uint256 vol);
    event VolSet(uint256 indexed seriesId, uint256 vol);
    event Traded(address indexed account, uint256 indexed seriesId, int256 amount, uint256 premium, uint256 paid);
    event Settled(uint256 indexed seriesId, uint256 price);
    event Redeemed(address indexed account, uint256 indexed seriesId, uint256 amount, uint256 payout);

    constructor(address quoteToken_, uint8 quoteDecimals, address feed_, uint256 rate_, uint256 feeBps_) {
        owner = msg.sender;
        quoteToken = IVenueToken(quoteToken_);
        feed = IVenueFeed(feed_);
        quoteScale = 10 ** (18 - quoteDecimals);
        feedScale = 10 ** (18 - IVenueFeed(feed_).decimals());
        rate = rate_;
        feeBps = feeBps_;
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "OptionsMarket: not owner");
        _;
    }

    // --- admin --------------------------------------------------------------------------------------------------

    function addSeries(bool isCall, uint256 strike, uint64 expiry, uint256 vol) external onlyOwner returns (uint256) {
        require(strike > 0 && vol > 0, "OptionsMarket: bad series");
        require(expiry > block.timestamp, "OptionsMarket: expiry in the past");
        series_.push(Series(isCall, expiry, strike, vol, false, 0, 0));
        uint256 id = series_.length - 1;
        emit SeriesListed(id, isCall, strike, expiry, vol);
        return id;
    }

    function setVol(uint256 seriesId, uint256 vol) external onlyOwner {
        require(vol > 0, "OptionsMarket: bad vol");
        _series(seriesId).vol = vol;
        emit VolSet(seriesId, vol);
    }

    function setRate(uint256 rate_) external onlyOwner {
        rate = rate_;
    }

    function setFeeBps(uint256 feeBps_) external onlyOwner {
        require(feeBps_ < 10_000, "OptionsMarket: bad fee");
        feeBps = feeBps_;
    }

    // --- trading ------------------------------------------------------------------------------------------------

    /// Buy `amount` options of a series for at most `maxCost` quote base units; returns what was paid.
    function buy(uint256 seriesId, uint256 amount, uint256 maxCost) external returns (uint256 cost) {
        require(amount > 0, "OptionsMarket: zero amount");
        Series storage s = _open(seriesId);
        uint256 premium = _premium(seriesId, amount);
        cost = _ceilDiv(premium + (premium * feeBps) / 10_000, quoteScale);
        require(cost <= maxCost, "OptionsMarket: cost above maxCost");
        require(quoteToken.transferFrom(msg.sender, address(this), cost), "OptionsMarket: payment failed");
        balanceOf[seriesId][msg.sender] += amount;
        s.openInterest += amount;
        emit Traded(msg.sender, seriesId, int256(amount), premium, cost);
    }

    /// Sell `amount` options of a series back to the pool for at least `minProceeds` quote base units.
    function sell(uint256 seriesId, uint256 amount, uint256 minProceeds) external returns (uint256 proceeds) {
        require(amount > 0, "OptionsMarket: zero amount");
        Series storage s = _open(seriesId);
        require(balanceOf[seriesId][msg.sender] >= amount, "OptionsMarket: sells more than held");
        uint256 premium = _premium(seriesId, amount);
        proceeds = (premium - (premium * feeBps) / 10_000) / quoteScale;
        require(proceeds >= minProceeds, "OptionsMarket: proceeds below minProceeds");
        balanceOf[seriesId][msg.sender] -= amount;
        s.openInterest -= amount;
        require(quoteToken.transfer(msg.sender, proceeds), "OptionsMarket: payment failed");
        emit Traded(msg.sender, seriesId, -int256(amount), premium, proceeds);
    }

    /// Fix a series' settlement price from the feed, once, at or after expiry (anyone may call it).
    function settle(uint256 seriesId) external {
        Series storage s = _series(seriesId);
        require(block.timestamp >= s.expiry, "OptionsMarket: not expired");
        require(!s.settled, "OptionsMarket: already settled");
        s.settled = true;
        s.settlementPrice = spot();
        emit Settled(seriesId, s.settlementPrice);
    }

    /// Pay the caller the intrinsic value of their options of a settled series; returns the payout.
    function redeem(uint256 seriesId) external returns (uint256 payout) {
        Series storage s = _series(seriesId);
        require(s.settled, "OptionsMarket: not settled");
        uint256 amount = balanceOf[seriesId][msg.sender];
        balanceOf[seriesId][msg.sender] = 0;
        s.openInterest -= amount;
        payout = (amount * _intrinsic(s, s.settlementPrice)) / 1e18 / quoteScale;
        if (payout > 0) require(quoteToken.transfer(msg.sender, payout), "OptionsMarket: payment failed");
        emit Redeemed(msg.sender, seriesId, amount, payout);
    }

    // --- views --------------------------------------------------------------------------------------------------

    function seriesCount() external view returns (uint256) {
        return series_.length;
    }

    function series(uint256 seriesId)
        external
        view
        returns (bool isCall, uint256 strike, uint64 expiry, uint256 vol, bool settled, uint256 settlementPrice)
    {
        Series storage s = _series(seriesId);
        return (s.isCall, s.strike, s.expiry, s.vol, s.settled, s.settlementPrice);
    }

    /// The series' mark (USD per 1 underlying, 1e18) and the inputs it was computed from: spot, strike, years to
    /// expiry, vol and rate (all 1e18). Past expiry the mark is the intrinsic value at the settlement price (or at
    /// spot before settlement).
    function quote(uint256 seriesId)
        public
        view
        returns (uint256 price, uint256 spotPrice, uint256 strike, uint256 timeYears, uint256 vol, uint256 rate_)
    {
        Series storage s = _series(seriesId);
        spotPrice = s.settled ? s.settlementPrice : spot();
        timeYears = block.timestamp >= s.expiry ? 0 : ((s.expiry - block.timestamp) * 1e18) / SECONDS_PER_YEAR;
        price = timeYears == 0 ? _intrinsic(s, spotPrice) : blackScholes(s.isCall, spotPrice, s.strike, timeYears,
                                                                         s.vol, rate);
        return (price, spotPrice, s.strike, timeYears, s.vol, rate);
    }

    /// What buying `amount` costs now (quote base units, fee included).
    function quoteBuy(uint256 seriesId, uint256 amount) external view returns (uint256) {
        uint256 premium = _premium(seriesId, amount);
        return _ceilDiv(premium + (premium * feeBps) / 10_000, quoteScale);
    }

    /// What selling `amount` pays now (quote base units, fee deducted).
    function quoteSell(uint256 seriesId, uint256 amount) external view returns (uint256) {
        uint256 premium = _premium(seriesId, amount);
        return (premium - (premium * feeBps) / 10_000) / quoteScale;
    }

    /// The underlying's price from the feed, 1e18 USD.
    function spot() public view returns (uint256) {
        (, int256 answer,,,) = feed.latestRoundData();
        require(answer > 0, "OptionsMarket: bad feed answer");
        return uint256(answer) * feedScale;
    }

    /// Black-Scholes price (1e18 USD per 1 underlying) of a European option, no dividend yield.
    function blackScholes(bool isCall, uint256 spotPrice, uint256 strike, uint256 timeYears, uint256 vol,
                          uint256 rate_) public pure returns (uint256) {
        int256 s = int256(spotPrice);
        int256 discountedStrike = (int256(strike) * (-(int256(rate_) * int256(timeYears)) / WAD).exp()) / WAD;
        int256 totalVol = (int256(vol) * int256(timeYears).sqrt()) / WAD;
        if (totalVol == 0) {
            int256 forwardIntrinsic = isCall ? s - discountedStrike : discountedStrike - s;
            return forwardIntrinsic > 0 ? uint256(forwardIntrinsic) : 0;
        }
        int256 d1 = (((s * WAD) / discountedStrike).ln() * WAD) / totalVol + totalVol / 2;
        int256 d2 = d1 - totalVol;
        int256 price = isCall
            ? (s * d1.normCdf() - discountedStrike * d2.normCdf()) / WAD
            : (discountedStrike * (-d2).normCdf() - s * (-d1).normCdf()) / WAD;
        return price > 0 ? uint256(price) : 0;
    }

    // --- internals ----------------------------------------------------------------------------------------------

    function _series(uint256 seriesId) private view returns (Series storage) {
        require(seriesId < series_.length, "OptionsMarket: unknown series");
        return series_[seriesId];
    }

    function _open(uint256 seriesId) private view returns (Series storage s) {
        s = _series(seriesId);
        require(block.timestamp < s.expiry, "OptionsMarket: series expired");
    }

    function _premium(uint256 seriesId, uint256 amount) private view returns (uint256) {
        (uint256 price,,,,,) = quote(seriesId);
        return (price * amount) / 1e18;
    }

    function _intrinsic(Series storage s, uint256 price) private view returns (uint256) {
        if (s.isCall) return price > s.strike ? price - s.strike : 0;
        return s.strike > price ? s.strike - price : 0;
    }

    function _ceilDiv(uint256 a, uint256 b) private pure returns (uint256) {
        return (a + b - 1) / b;
    }
}
