// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// The Safe calls a module may make (Safe 1.4.1 ModuleManager); operation 0 is Call, the only one used here.
interface ISafeModuleCalls {
    function execTransactionFromModuleReturnData(address to, uint256 value, bytes calldata data, uint8 operation)
        external
        returns (bool success, bytes memory returnData);
}

interface IAaveHealth {
    function getUserAccountData(address user)
        external
        view
        returns (uint256, uint256, uint256, uint256, uint256, uint256 healthFactor);
}

interface IAaveFlashLoanSimple {
    function flashLoanSimple(address receiver, address asset, uint256 amount, bytes calldata params, uint16 referral)
        external;
}

interface IMorphoFlashLoan {
    function flashLoan(address token, uint256 assets, bytes calldata data) external;
}

interface IModuleToken {
    function transfer(address to, uint256 amount) external returns (bool);
    function approve(address spender, uint256 amount) external returns (bool);
}

/// Ballast's keeper module, one instance per Safe. A keeper may only run recipes: ordered lists of calls that the
/// Safe makes, each to a (target, selector) its owners allowed, with every argument that names a beneficiary bound
/// to the Safe and every approval bound to an allowed spender. After a recipe the Safe's Aave health factor must be
/// at least the owners' floor, and a recipe flagged as a deleverage must not lower it. Only the Safe configures it.
///
/// Reason codes: BK001 not a keeper; BK002 not the Safe; BK010 call not allowed; BK011 an argument must be the Safe;
/// BK012 spender not allowed; BK013 the target is the Safe or the module; BK020 a call reverted without a reason
/// (a reason, when there is one, is passed through); BK030 health factor under the floor; BK031 a deleverage lowered
/// the health factor; BK040 flash-loan callback not from the loan in flight; BK041 flash lender not allowed;
/// BK042 a token call of the module itself failed.
contract BallastKeeperModule {
    struct Call {
        address target;
        bytes data;
    }

    struct CallRule {
        bool allowed;
        uint256 safeArgs; // bit i: ABI word i of the arguments must be the Safe
        uint256 spenderArgs; // bit i: ABI word i of the arguments must be an allowed spender
    }

    uint8 public constant LENDER_AAVE_V3 = 1;
    uint8 public constant LENDER_MORPHO_BLUE = 2;

    address public immutable safe;
    mapping(address => bool) public keepers;
    mapping(address => bool) public spenders;
    mapping(address => uint8) public flashLenders;
    address public aavePool;
    uint256 public healthFactorFloor;
    mapping(address => mapping(bytes4 => CallRule)) private rules;

    // The flash loan in flight, for the lender's callback only (cleared when the callback starts).
    address private transient loanLender;
    address private transient loanAsset;
    uint256 private transient loanAmount;

    event RecipeExecuted(address keeper, uint256 calls, uint256 healthFactorBefore, uint256 healthFactorAfter);
    event KeeperSet(address keeper, bool enabled);
    event CallSet(address target, bytes4 selector, uint256 safeArgs, uint256 spenderArgs);
    event CallRemoved(address target, bytes4 selector);
    event SpenderSet(address spender, bool allowed);
    event FlashLenderSet(address lender, uint8 kind);
    event HealthCheckSet(address aavePool, uint256 floorWad);

    constructor(address safe_) {
        safe = safe_;
    }

    modifier onlySafe() {
        require(msg.sender == safe, "BK002");
        _;
    }

    modifier onlyKeeper() {
        require(keepers[msg.sender], "BK001");
        _;
    }

    // --- Configuration, by the Safe only --------------------------------------------------------------------------

    function setKeeper(address keeper, bool enabled) external onlySafe {
        keepers[keeper] = enabled;
        emit KeeperSet(keeper, enabled);
    }

    function setCall(address target, bytes4 selector, uint256 safeArgs, uint256 spenderArgs) external onlySafe {
        rules[target][selector] = CallRule(true, safeArgs, spenderArgs);
        emit CallSet(target, selector, safeArgs, spenderArgs);
    }

    function removeCall(address target, bytes4 selector) external onlySafe {
        delete rules[target][selector];
        emit CallRemoved(target, selector);
    }

    function setSpender(address spender, bool allowed) external onlySafe {
        spenders[spender] = allowed;
        emit SpenderSet(spender, allowed);
    }

    /// kind: LENDER_AAVE_V3, LENDER_MORPHO_BLUE, or 0 to remove the lender.
    function setFlashLender(address lender, uint8 kind) external onlySafe {
        require(kind <= LENDER_MORPHO_BLUE, "BK041");
        flashLenders[lender] = kind;
        emit FlashLenderSet(lender, kind);
    }

    /// The Aave pool whose health factor of the Safe is checked after every recipe (address 0: no check).
    function setHealthCheck(address pool, uint256 floorWad) external onlySafe {
        aavePool = pool;
        healthFactorFloor = floorWad;
        emit HealthCheckSet(pool, floorWad);
    }

    function callRule(address target, bytes4 selector)
        external
        view
        returns (bool allowed, uint256 safeArgs, uint256 spenderArgs)
    {
        CallRule memory rule = rules[target][selector];
        return (rule.allowed, rule.safeArgs, rule.spenderArgs);
    }

    // --- Keeper entry points ---------------------------------------------------------------------------------------

    /// Runs `calls` from the Safe, all or nothing, then checks the health factor.
    function execute(Call[] calldata calls, bool deleverage) external onlyKeeper {
        uint256 before = healthFactor();
        _runAll(calls);
        _checkHealth(before, deleverage, calls.length);
    }

    /// Borrows `amount` of `asset` from an allowed flash lender, hands it to the Safe, runs `calls` from the Safe,
    /// takes the loan and its premium back from the Safe and repays the lender; then checks the health factor.
    function executeWithFlashLoan(
        address lender,
        address asset,
        uint256 amount,
        Call[] calldata calls,
        bool deleverage
    ) external onlyKeeper {
        uint8 kind = flashLenders[lender];
        require(kind != 0, "BK041");
        uint256 before = healthFactor();
        (loanLender, loanAsset, loanAmount) = (lender, asset, amount);
        if (kind == LENDER_AAVE_V3) {
            IAaveFlashLoanSimple(lender).flashLoanSimple(address(this), asset, amount, abi.encode(calls), 0);
        } else {
            IMorphoFlashLoan(lender).flashLoan(asset, amount, abi.encode(calls));
        }
        require(loanLender == address(0), "BK040"); // the lender never called back
        _checkHealth(before, deleverage, calls.length);
    }

    /// Aave v3 `flashLoanSimple` callback.
    function executeOperation(address asset, uint256 amount, uint256 premium, address initiator, bytes calldata params)
        external
        returns (bool)
    {
        require(initiator == address(this), "BK040");
        _onFlashLoan(asset, amount, premium, params);
        return true;
    }

    /// Morpho Blue `flashLoan` callback (Morpho's flash loans are free).
    function onMorphoFlashLoan(uint256 assets, bytes calldata data) external {
        _onFlashLoan(loanAsset, assets, 0, data);
    }

    /// The Safe's Aave health factor (wad; 2^256-1 without debt or without a configured pool).
    function healthFactor() public view returns (uint256) {
        if (aavePool == address(0)) return type(uint256).max;
        (,,,,, uint256 factor) = IAaveHealth(aavePool).getUserAccountData(safe);
        return factor;
    }

    // --- Internals -------------------------------------------------------------------------------------------------

    function _onFlashLoan(address asset, uint256 amount, uint256 premium, bytes calldata params) private {
        require(msg.sender == loanLender && asset == loanAsset && amount == loanAmount, "BK040");
        loanLender = address(0);
        require(IModuleToken(asset).transfer(safe, amount), "BK042");
        _runAll(abi.decode(params, (Call[])));
        // The only transfer out of the Safe that ever happens: the module takes back what it lent, plus the premium.
        bytes memory returned = _exec(asset, abi.encodeCall(IModuleToken.transfer, (address(this), amount + premium)));
        require(returned.length == 0 || abi.decode(returned, (bool)), "BK042");
        require(IModuleToken(asset).approve(msg.sender, amount + premium), "BK042");
    }

    function _runAll(Call[] memory calls) private {
        for (uint256 i = 0; i < calls.length; i++) {
            _check(calls[i]);
            _exec(calls[i].target, calls[i].data);
        }
    }

    function _check(Call memory call) private view {
        require(call.target != safe && call.target != address(this), "BK013");
        require(call.data.length >= 4, "BK010");
        CallRule memory rule = rules[call.target][bytes4(call.data)];
        require(rule.allowed, "BK010");
        for (uint256 i = 0; (rule.safeArgs | rule.spenderArgs) >> i != 0; i++) {
            if ((rule.safeArgs >> i) & 1 == 1) require(_word(call.data, i) == uint256(uint160(safe)), "BK011");
            if ((rule.spenderArgs >> i) & 1 == 1) {
                uint256 word = _word(call.data, i);
                require(word >> 160 == 0 && spenders[address(uint160(word))], "BK012");
            }
        }
    }

    /// ABI word `index` of the arguments (after the selector); a word past the end reads as 2^256-1, which no
    /// rule accepts.
    function _word(bytes memory data, uint256 index) private pure returns (uint256 word) {
        uint256 offset = 4 + 32 * index;
        if (data.length < offset + 32) return type(uint256).max;
        assembly {
            word := mload(add(add(data, 32), offset))
        }
    }

    /// Makes the Safe call `target` (Call, no value) and returns what it returned; a revert is passed through with its
    /// reason, or BK020.
    function _exec(address target, bytes memory data) private returns (bytes memory) {
        (bool success, bytes memory returned) =
            ISafeModuleCalls(safe).execTransactionFromModuleReturnData(target, 0, data, 0);
        if (!success) {
            require(returned.length > 0, "BK020");
            assembly {
                revert(add(returned, 32), mload(returned))
            }
        }
        return returned;
    }

    function _checkHealth(uint256 before, bool deleverage, uint256 calls) private {
        uint256 afterwards = healthFactor();
        require(afterwards >= healthFactorFloor, "BK030");
        require(!deleverage || afterwards >= before, "BK031");
        emit RecipeExecuted(msg.sender, calls, before, afterwards);
    }
}
