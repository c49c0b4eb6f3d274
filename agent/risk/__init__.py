"""The pure risk engine: option Greeks and implied vol, Uniswap v3 LP and Aave v3 math, perps, the book's desk
Greeks and liquidation distance, and stress. No web3, no clock, no I/O: numbers in, numbers out."""
