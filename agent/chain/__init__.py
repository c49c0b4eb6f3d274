"""Chain access: RPC failover, Multicall3 batching, ABIs, signing and fees."""
