"""Representation quality: how linearly the latent means separate the labels."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def linear_probe_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, *, seed: int = 0) -> float:
    """Test accuracy of a logistic regression fitted on ``z_train`` (standardized) to ``y_train``.

    scikit-learn's multinomial logistic regression (L-BFGS); the codes are standardized with the
    training set's mean and scale so that the regularization treats every unit alike.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    to_np = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(to_np(z_train), np.asarray(y_train.cpu()))
    return float(clf.score(to_np(z_test), np.asarray(y_test.cpu())))
