// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// Read batching with the Multicall3 interface (`aggregate3`, `getBlockNumber`, ...), placed at the canonical
/// Multicall3 address on the local chain so that the agent reads the local world exactly as it reads mainnet.
contract BatchReader {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory results) {
        results = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory data) = calls[i].target.call(calls[i].callData);
            if (!ok && !calls[i].allowFailure) {
                // Bubble the failing call's revert data up, as Multicall3 callers expect a revert here.
                assembly {
                    revert(add(data, 0x20), mload(data))
                }
            }
            results[i] = Result(ok, data);
        }
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }

    function getBlockHash(uint256 blockNumber) external view returns (bytes32) {
        return blockhash(blockNumber);
    }

    function getCurrentBlockTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function getEthBalance(address account) external view returns (uint256) {
        return account.balance;
    }

    function getChainId() external view returns (uint256) {
        return block.chainid;
    }
}
