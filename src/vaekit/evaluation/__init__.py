"""Evaluation: held-out metrics, the estimators of log p(x), the exactly solvable PPCA, the
linear probe, embeddings and anomaly scores, all written against the model protocol."""
