"""scikit-learn estimators over vaekit's VAE: a transformer and an outlier detector.

>>> from sklearn.pipeline import make_pipeline
>>> from vaekit.sklearn import VAETransformer, VAEOutlierDetector
>>> z = VAETransformer(latent_dim=2, random_state=0).fit_transform(X)  # doctest: +SKIP
>>> labels = VAEOutlierDetector(contamination=0.05).fit(X).labels_  # doctest: +SKIP

Both follow scikit-learn's conventions (parameters stored as given in ``__init__``, learned state
in trailing-underscore attributes, scikit-learn's own input validation, clone and pickle) and
pass ``sklearn.utils.estimator_checks.check_estimator`` (``tests/test_sklearn.py``), the checks
that cannot apply listed with their reasons in :data:`EXPECTED_FAILED_CHECKS`.

Scores are in nats and in the input's own units: with ``standardize=True`` the columns are
standardized before training and the log-Jacobian of that change, ``-sum(log std)``, is added
back, so the figures of two fits of the same data in different units differ by exactly that.

:class:`VAEOutlierDetector` follows PyOD's conventions, not those of scikit-learn's
``OutlierMixin``: ``predict`` returns 1 for an outlier and 0 for an inlier (scikit-learn's
outlier detectors return -1 / +1), and ``decision_function`` is higher for more abnormal rows
(scikit-learn's is higher for more normal ones). It therefore does not inherit ``OutlierMixin``
and does not call itself an ``"outlier_detector"`` in its tags, so scikit-learn's tools do not
read its 0/1 labels as -1/+1. ``score_samples`` keeps scikit-learn's sense (higher is more
normal: the log-likelihood bound itself).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the estimator's own method
    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)

__all__ = ["VAETransformer", "VAEOutlierDetector", "EXPECTED_FAILED_CHECKS", "ELBO_SAMPLES"]

#: The checks of ``sklearn.utils.estimator_checks`` that cannot apply, by name, with the reason
#: (``parametrize_with_checks(..., expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)``).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

#: Draws of ``z ~ q(z|x)`` behind each row's ELBO. The same draws of standard normal noise (fixed
#: at fit from ``random_state``) serve every row, so a row's score does not depend on the other
#: rows scored with it, nor on their order.
ELBO_SAMPLES = 16

_ROWS = 1024  # rows per batch at inference


class _BestWeights:
    """A ``fit`` callback that keeps a copy of the weights of the epoch with the best validation
    ELBO, and puts them back into the model afterwards."""

    def __init__(self):
        self.best, self.epoch, self.state, self.scores = -np.inf, 0, None, []

    def __call__(self, row, model) -> None:
        self.scores.append(float(row["val_elbo"]))
        if row["val_elbo"] > self.best:
            self.best, self.epoch = row["val_elbo"], row["epoch"]
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model) -> int:
        if self.state is None:  # no finite validation figure at all: the last weights stay
            return len(self.scores)
        model.load_state_dict(self.state)
        return int(self.epoch)


class _VAEBase(BaseEstimator):
    """What both estimators share: fitting a VAE to standardized columns, and scoring rows."""

    def _fit_model(self, X) -> np.ndarray:
        """Validate ``X``, standardize, train; returns the validated ``X``."""
        import torch

        from .config import LIKELIHOOD_NAMES, ModelConfig, TrainConfig
        from .models import VAE
        from .seeding import seeded
        from .training import fit

        self._check_params()
        X = validate_data(self, X, reset=True, dtype=[np.float64, np.float32])
        if self.standardize:
            self.mean_ = X.mean(axis=0).astype(np.float64)
            scale = X.std(axis=0).astype(np.float64)
            scale[~(scale > np.finfo(np.float32).tiny * 1e6)] = 1.0  # a constant column stays as it is
            self.scale_ = scale
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        if self.likelihood not in LIKELIHOOD_NAMES:
            raise ValueError(f"likelihood={self.likelihood!r}: choose one of {', '.join(LIKELIHOOD_NAMES)}")
        if self.standardize and self.likelihood in ("bernoulli", "continuous-bernoulli"):
            raise ValueError(f"likelihood={self.likelihood!r} models values in [0, 1], which standardize=True "
                             "turns into values outside it: set standardize=False")
        hidden = (self.hidden,) if isinstance(self.hidden, numbers.Integral) else tuple(self.hidden)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        x = self._to_tensor(X, torch.float32)
        with seeded(seed):
            model = VAE(ModelConfig(data_shape=(X.shape[1],), latent_dim=int(self.latent_dim), hidden=hidden,
                                    likelihood=self.likelihood))
            model.init_output_bias(x.mean(0))
            self._noise = torch.randn(ELBO_SAMPLES, 1, int(self.latent_dim))
        train, val = x, None
        if self.early_stopping:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            n_val = int(np.ceil(self.validation_fraction * len(x)))
            if n_val >= len(x):
                raise ValueError(f"early_stopping holds out {n_val} of n_samples = {len(x)} rows "
                                 f"(validation_fraction={self.validation_fraction!r}), leaving none to train on")
            train, val = x[order[n_val:]], x[order[:n_val]]
        cfg = TrainConfig(epochs=int(self.epochs), batch_size=None if self.batch_size is None else int(self.batch_size),
                          lr=float(self.lr), seed=seed, device=self.device,
                          patience=int(self.n_iter_no_change) if self.early_stopping else 0)
        best = _BestWeights() if self.early_stopping else None
        fit(model, train, val, cfg, progress=False, callback=best)
        self.best_epoch_ = best.restore(model) if best else int(self.epochs)
        self.validation_scores_ = best.scores if best else None
        model.eval()
        self.model_ = model
        self._n_features_out = int(self.latent_dim)
        return X

    def _check_params(self) -> None:
        for name in ("latent_dim", "epochs"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name}={v!r}: a whole number of at least 1")
        if self.batch_size is not None and (not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1):
            raise ValueError(f"batch_size={self.batch_size!r}: None or a whole number of at least 1")
        if self.n_importance is not None and (not isinstance(self.n_importance, numbers.Integral)
                                              or self.n_importance < 1):
            raise ValueError(f"n_importance={self.n_importance!r}: None (the ELBO) or a whole number of at least 1")
        if not (isinstance(self.lr, numbers.Real) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}: a positive number")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 < self.validation_fraction < 1):
            raise ValueError(f"validation_fraction={self.validation_fraction!r}: a share in (0, 1)")
        if not isinstance(self.n_iter_no_change, numbers.Integral) or self.n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change={self.n_iter_no_change!r}: a whole number of at least 1")

    def _to_tensor(self, X: np.ndarray, dtype=None):
        """Standardized rows as a tensor (float64 by default; a copy: the input stays as it is)."""
        import torch

        x = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return torch.tensor(x, dtype=torch.float64 if dtype is None else dtype)

    def _model64(self):
        """A float64 copy of the fitted model, for scoring and encoding: in float32 a row's result
        changes in the 7th digit with the number of rows computed beside it; in float64 it does
        not, so outputs do not depend on how the rows are batched (mps has no float64: float32)."""
        import copy

        if self.model_.device.type == "mps":
            return self.model_
        return copy.deepcopy(self.model_).double().eval()

    def _validated(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def _log_jacobian(self) -> float:
        return -float(np.log(self.scale_).sum())

    def score_samples(self, X) -> np.ndarray:
        """Each row's log-likelihood bound in nats, in the input's units (higher is more normal):
        the ELBO (``ELBO_SAMPLES`` draws), or with ``n_importance`` K the importance-weighted
        estimate of ``log p(x)`` with K samples (``vaekit.evaluation.estimators.log_likelihood``;
        its noise is drawn per batch of rows, so a row's estimate varies a little, within the
        estimator's own noise, with the rows scored beside it)."""
        import torch

        X = self._validated(X)
        model = self._model64()
        x = self._to_tensor(X, model.encoder.loc_head.weight.dtype)
        if self.n_importance is not None:
            from .evaluation.estimators import log_likelihood

            ll = log_likelihood(model, x, int(self.n_importance), generator_seed=0).numpy()
        else:
            out = []
            with torch.inference_mode():
                for start in range(0, len(x), _ROWS):
                    b = x[start:start + _ROWS].to(model.device)
                    noise = self._noise.to(model.device, b.dtype).expand(-1, len(b), -1)
                    out.append(model.elbo({"x": b}, n_samples=ELBO_SAMPLES, noise=noise).elbo.double().cpu())
            ll = torch.cat(out).numpy() if out else np.zeros(0)
        return ll + self._log_jacobian()

    def sample(self, n_samples: int = 1, random_state=None, *, draw: bool = True) -> np.ndarray:
        """``n_samples`` rows from the model, in the input's units: ``z ~ p(z)`` then
        ``x ~ p(x|z)`` (with ``draw=False``, the decoded means of ``p(x|z)``)."""
        import torch

        check_is_fitted(self)
        gen = torch.Generator(device=self.model_.device).manual_seed(
            int(check_random_state(random_state).randint(np.iinfo(np.int32).max)))
        with torch.inference_mode():
            x = self.model_.sample(int(n_samples), generator=gen, draw=draw)
        return x.double().cpu().numpy() * self.scale_ + self.mean_


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _VAEBase):
    """A VAE as a scikit-learn transformer: rows to the means of ``q(z|x)``, and back.

    Parameters
    ----------
    latent_dim : int, the size of the latent space (the number of output columns)
    hidden : tuple of int, the widths of the encoder's hidden layers (the decoder mirrors them)
    epochs : int, passes over the data
    batch_size : int or None, rows per step (None: vaekit's rule, N/64 as a power of 2 in [16, 128])
    lr : float, Adam's learning rate
    likelihood : str, ``p(x|z)``: gaussian-lowrank (a learned variance per column plus a learned
        low-rank covariance across columns, as the command line's default for tables),
        gaussian-learned (the variances alone), gaussian, bernoulli or continuous-bernoulli (the
        last two need data in [0, 1] and ``standardize=False``)
    standardize : bool, train on standardized columns (mean and std remembered as ``mean_``, ``scale_``)
    n_importance : int or None, ``score_samples`` estimates ``log p(x)`` by importance sampling
        with this many samples; None: the ELBO
    early_stopping : bool, hold out ``validation_fraction`` of the rows (drawn with
        ``random_state``), end training once their ELBO has not improved in ``n_iter_no_change``
        epochs (``epochs`` is then the most), and keep the weights of the best epoch
        (``best_epoch_``). As scikit-learn's ``MLPRegressor``; a VAE with a learned variance
        overfits a small table within a few hundred epochs, and this finds where
    validation_fraction : float in (0, 1), the share of rows held out with ``early_stopping``
    n_iter_no_change : int, epochs without a better validation ELBO before stopping
    random_state : int, RandomState or None, seeds the initialization, the training and the ELBO's draws
    device : str, cpu | cuda | mps | auto

    Attributes
    ----------
    model_ : vaekit.VAE, the fitted model (on standardized columns)
    best_epoch_ : int, with ``early_stopping``, the epoch whose weights were kept (else ``epochs``)
    validation_scores_ : list of float or None, with ``early_stopping``, the held-out rows' mean
        ELBO (nats, standardized units) after each epoch
    mean_, scale_ : ndarray of shape (n_features_in_,), the standardization
    n_features_in_, feature_names_in_ : as in scikit-learn
    """

    def __init__(self, latent_dim=2, hidden=(64, 64), epochs=50, batch_size=None, lr=1e-3,
                 likelihood="gaussian-lowrank", standardize=True, n_importance=None, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, random_state=None, device="cpu"):
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.likelihood = likelihood
        self.standardize = standardize
        self.n_importance = n_importance
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Train the VAE on the rows of ``X`` (``y`` is ignored)."""
        self._fit_model(X)
        return self

    def transform(self, X) -> np.ndarray:
        """The means of ``q(z|x)``, shape (n_samples, latent_dim)."""
        import torch

        X = self._validated(X)
        model = self._model64()
        x = self._to_tensor(X, model.encoder.loc_head.weight.dtype)
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), _ROWS):
                out.append(model.encode({"x": x[start:start + _ROWS].to(model.device)}).loc.double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self._n_features_out))

    def inverse_transform(self, X) -> np.ndarray:
        """Latent points decoded to the means of ``p(x|z)``, in the input's units."""
        import torch

        check_is_fitted(self)
        from sklearn.utils import check_array

        Z = check_array(X, dtype=[np.float64, np.float32])
        if Z.shape[1] != self._n_features_out:
            raise ValueError(f"X has {Z.shape[1]} features, but {type(self).__name__}.inverse_transform is "
                             f"expecting {self._n_features_out} features (latent_dim) as input.")
        model = self._model64()
        z = torch.tensor(Z, dtype=model.encoder.loc_head.weight.dtype, device=model.device)
        with torch.inference_mode():
            x = model.decode(z).mean.double().cpu().numpy()
        return x * self.scale_ + self.mean_

    def score(self, X, y=None) -> float:
        """The mean of :meth:`score_samples`: the average log-likelihood bound in nats per row
        (what ``GridSearchCV`` maximizes on the held-out rows)."""
        return float(np.mean(self.score_samples(X)))

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """``vae0, vae1, ...``, one per latent dimension."""
        check_is_fitted(self, "_n_features_out")
        _check_feature_names_in(self, input_features, generate_names=False)
        return np.asarray([f"vae{i}" for i in range(self._n_features_out)], dtype=object)


class VAEOutlierDetector(_VAEBase):
    """Outliers as the rows a VAE explains worst, in PyOD's conventions.

    ``fit(X)`` sets ``decision_scores_`` (the training rows' scores: minus the ELBO, or minus
    the importance-weighted log-likelihood with ``n_importance``; higher is more abnormal),
    ``threshold_`` (the ``1 - contamination`` quantile of those scores) and ``labels_`` (1 for
    a score above the threshold, an outlier; 0 for an inlier). ``decision_function`` and
    ``predict`` score and label new rows the same way. ``score_samples`` is scikit-learn's
    (higher is more normal) and equals ``-decision_function``.

    Not an ``OutlierMixin``: scikit-learn's detectors label outliers -1 and inliers +1;
    this one, as PyOD's, labels them 1 and 0.

    Parameters
    ----------
    contamination : float in (0, 0.5], the share of outliers expected in the training rows
    The rest : as :class:`VAETransformer`.
    """

    def __init__(self, contamination=0.1, latent_dim=2, hidden=(64, 64), epochs=50, batch_size=None, lr=1e-3,
                 likelihood="gaussian-lowrank", standardize=True, n_importance=None, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, random_state=None, device="cpu"):
        self.contamination = contamination
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.likelihood = likelihood
        self.standardize = standardize
        self.n_importance = n_importance
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.device = device

    def fit(self, X, y=None):
        """Train on ``X`` (``y`` is ignored) and set ``decision_scores_``, ``threshold_``, ``labels_``."""
        c = self.contamination
        if not (isinstance(c, numbers.Real) and 0 < c <= 0.5):
            raise ValueError(f"contamination={c!r}: a share in (0, 0.5]")
        X = self._fit_model(X)
        self.decision_scores_ = self.decision_function(X)
        self.threshold_ = float(np.percentile(self.decision_scores_, 100 * (1 - c)))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Each row's anomaly score in nats (higher is more abnormal): minus :meth:`score_samples`."""
        return -self.score_samples(X)

    def predict(self, X) -> np.ndarray:
        """1 for an outlier (a score above ``threshold_``), 0 for an inlier."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """``fit(X).labels_``."""
        return self.fit(X).labels_
