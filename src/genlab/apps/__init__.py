"""Applications built on trained runs: forecasting, completion, generation (each a thin layer over a model)."""
