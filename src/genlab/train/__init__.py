"""One training loop for every family, with EMA, checkpoints and data-parallel processes."""
