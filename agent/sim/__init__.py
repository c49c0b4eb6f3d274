"""Simulation: the backtest (a fast simulated market around the unchanged risk engine and planner) and the crash
replay on the local chain with the real contracts. `ballast backtest` and `ballast replay` are their commands."""
