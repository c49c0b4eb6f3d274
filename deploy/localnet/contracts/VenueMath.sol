// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The two token and feed calls the local reference venues make.
interface IVenueToken {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IVenueFeed {
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
    function decimals() external view returns (uint8);
}

/// Signed 1e18 fixed-point math for the reference venues: exp, ln, sqrt and the standard normal CDF, each accurate
/// to a few units of 1e-18 (absolute for the CDF, relative for exp and ln) over the ranges Black-Scholes needs.
library VenueMath {
    int256 internal constant WAD = 1e18;
    int256 internal constant LN2 = 693147180559945309; // ln 2
    int256 internal constant LN_SQRT_2PI = 918938533204672742; // ln √(2π)

    /// e^x for x in wad; 0 below −42 (e^−42 < 1e−18), reverts above 40.
    function exp(int256 x) internal pure returns (int256) {
        if (x < -42 * WAD) return 0;
        require(x <= 40 * WAD, "VenueMath: exp overflow");
        // x = k·ln2 + r with |r| ≤ ln2/2; e^r by its Taylor series at 1e36 for headroom, then scaled by 2^k.
        int256 k = (x >= 0 ? x + LN2 / 2 : x - LN2 / 2) / LN2;
        int256 r = (x - k * LN2) * 1e18; // 1e36
        int256 sum = 1e36;
        int256 term = 1e36;
        for (int256 n = 1; n < 40; n++) {
            term = (term * r) / (n * 1e36);
            if (term == 0) break;
            sum += term;
        }
        if (k >= 0) return (sum << uint256(k)) / 1e18;
        return (sum >> uint256(-k)) / 1e18;
    }

    /// ln x for x > 0 in wad.
    function ln(int256 x) internal pure returns (int256) {
        require(x > 0, "VenueMath: ln of a non-positive number");
        // x = m·2^k with m in [1, 2): ln x = k·ln2 + 2·atanh((m − 1)/(m + 1)), the series in z² ≤ 1/9 at 1e36.
        int256 k = int256(_log2(uint256(x))) - 59; // 2^59 ≤ 1e18 < 2^60
        int256 m = k >= 0 ? x >> uint256(k) : x << uint256(-k);
        while (m >= 2 * WAD) {
            m >>= 1;
            k += 1;
        }
        while (m < WAD) {
            m <<= 1;
            k -= 1;
        }
        int256 z = ((m - WAD) * 1e36) / (m + WAD); // 1e36
        int256 z2 = (z * z) / 1e36;
        int256 sum = z;
        int256 power = z;
        for (int256 n = 3; n < 200; n += 2) {
            power = (power * z2) / 1e36;
            int256 term = power / n;
            if (term == 0) break;
            sum += term;
        }
        return k * LN2 + (2 * sum) / 1e18;
    }

    /// √x for x ≥ 0 in wad (rounded down).
    function sqrt(int256 x) internal pure returns (int256) {
        require(x >= 0, "VenueMath: sqrt of a negative number");
        return int256(_isqrt(uint256(x) * 1e18));
    }

    /// N(x), the standard normal CDF, in wad. Marsaglia's series N(a) = ½ + φ(a)·(a + a³/3 + a⁵/(3·5) + …) has only
    /// positive terms (no cancellation); φ(a)·S is taken as e^(ln S − a²/2 − ln√(2π)) so that its precision is
    /// relative, not absolute, far in the tails.
    function normCdf(int256 x) internal pure returns (int256) {
        int256 a = x >= 0 ? x : -x;
        if (a == 0) return WAD / 2;
        if (a >= 9 * WAD) return x > 0 ? WAD : int256(0); // N(−9) < 1e−18
        int256 a2 = (a * a) / WAD;
        int256 term = a * 1e18; // 1e36
        int256 series = term;
        for (int256 i = 3; i < 1000; i += 2) {
            term = (term * a2) / (i * WAD);
            if (term == 0) break;
            series += term;
        }
        int256 tail;
        if (a < 3 * WAD) {
            tail = (exp(-a2 / 2 - LN_SQRT_2PI) * series) / 1e36;
        } else {
            tail = exp(ln(series / 1e18) - a2 / 2 - LN_SQRT_2PI);
        }
        return x > 0 ? WAD / 2 + tail : WAD / 2 - tail;
    }

    function _log2(uint256 x) private pure returns (uint256 r) {
        while (x > 1) {
            x >>= 1;
            r++;
        }
    }

    function _isqrt(uint256 x) private pure returns (uint256 y) {
        if (x == 0) return 0;
        // Newton's iteration from a power of two above √x decreases to ⌊√x⌋ in a few steps.
        uint256 z = uint256(1) << ((_log2(x) / 2) + 1);
        do {
            y = z;
            z = (x / z + z) / 2;
        } while (z < y);
    }
}
