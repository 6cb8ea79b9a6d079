"""Ranker: generates candidate bundles from a shopper's signals, scores them, and chooses the answer
through the current policy (with logged propensities, so every answer can be evaluated off-policy)."""
