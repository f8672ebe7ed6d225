"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by retrograd.

Drop-in for ``sklearn.neural_network``'s classes of the same names: the same parameter
names and defaults (hidden_layer_sizes=(100,), activation="relu", solver="adam",
alpha=1e-4, batch_size="auto", learning_rate_init=1e-3, max_iter=200, ...), the same
stopping rule (``tol`` over ``n_iter_no_change`` epochs, on the training loss or, with
``early_stopping``, on the validation score) and the same learned attributes
(``coefs_`` as (n_in, n_out) matrices, ``intercepts_``, ``loss_curve_``, ``n_iter_``,
``classes_``, ``n_features_in_``). Two more solvers: "rprop" and "quickprop", batch
methods that take the whole training set per step when ``batch_size="auto"``.

The network is an ``nn.Sequential`` of ``Linear`` layers whose weights *are* the arrays
of ``coefs_`` and ``intercepts_`` (no copy), trained by ``rg.graph.compile_step`` (one
trace per batch shape, a few ms; predictions run eagerly).
Needs scikit-learn (``pip install 'retrograd[sklearn]'``); imported only when used.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import blas, nn, optim
from .graph import compile_step
from .nn import functional as F
from .tensor import Tensor, no_grad

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid,
                "identity": nn.Identity}
_SOLVERS = ("adam", "sgd", "rprop", "quickprop")
_FULL_BATCH = ("rprop", "quickprop")   # sign/secant steps assume the whole gradient


class _BaseMLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10):
        self.hidden_layer_sizes, self.activation, self.solver = hidden_layer_sizes, activation, solver
        self.alpha, self.batch_size, self.learning_rate_init = alpha, batch_size, learning_rate_init
        self.max_iter, self.shuffle, self.random_state = max_iter, shuffle, random_state
        self.tol, self.verbose, self.warm_start = tol, verbose, warm_start
        self.momentum, self.nesterovs_momentum = momentum, nesterovs_momentum
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.n_iter_no_change = n_iter_no_change

    # ---- pickling: the retrograd objects hold weakrefs; the arrays are the state
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_net", None)
        state.pop("_optimizer", None)     # partial_fit after unpickling starts it afresh
        state.pop("_step", None)
        return state

    # ---- validation (in fit, not __init__, as scikit-learn requires)
    def _check_params(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        if self.max_iter < 1 or self.alpha < 0 or self.learning_rate_init <= 0:
            raise ValueError(f"need max_iter >= 1, alpha >= 0, learning_rate_init > 0; got "
                             f"{self.max_iter}, {self.alpha}, {self.learning_rate_init}")
        if self.early_stopping and not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, (int, np.integer))
                                              and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or a positive int, got "
                             f"{self.batch_size!r}")
        return [int(s) for s in sizes]

    # ---- the network
    def _initialize(self, sizes, rng):
        """Glorot-uniform weights and biases drawn as scikit-learn's MLP draws them."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for a, b in zip(sizes[:-1], sizes[1:]):
            bound = np.sqrt(factor / (a + b))
            self.coefs_.append(rng.uniform(-bound, bound, (a, b)))
            self.intercepts_.append(rng.uniform(-bound, bound, b))
        self.n_layers_, self._optimizer = len(sizes), None
        self.t_, self.n_iter_, self.loss_curve_ = 0, 0, []
        self.best_loss_, self._no_improvement_count = np.inf, 0
        self._net = None

    def _network(self):
        """The Sequential whose Linear weights are coefs_ / intercepts_ themselves."""
        if getattr(self, "_net", None) is None:
            layers = []
            for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_)):
                lin = nn.Linear(*w.shape, dtype=np.float64)
                lin.weight, lin.bias = nn.Parameter(w), nn.Parameter(b)   # shared, no copy
                layers.append(lin)
                if i < len(self.coefs_) - 1:
                    layers.append(_ACTIVATIONS[self.activation]())
            self._net = nn.Sequential(*layers)
        return self._net

    def _make_optimizer(self, params):
        lr = self.learning_rate_init
        if self.solver == "adam":
            return optim.Adam(params, lr=lr, betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        if self.solver == "sgd":
            return optim.SGD(params, lr=lr, momentum=self.momentum,
                             nesterov=bool(self.nesterovs_momentum and self.momentum > 0))
        return (optim.Rprop if self.solver == "rprop" else optim.Quickprop)(params, lr=lr)

    def _forward(self, X):
        with no_grad():
            return self._network()(Tensor(np.asarray(X, dtype=np.float64))).numpy()

    def _loss(self, out, target, n):
        """The data loss plus scikit-learn's L2 term: alpha/2 · Σ‖W‖² / batch size."""
        loss = self._data_loss(out, target)
        if self.alpha:
            l2 = sum((p * p).sum() for p in self._network().parameters() if p.ndim == 2)
            loss = loss + (0.5 * self.alpha / n) * l2
        return loss

    # ---- training
    def _batch_size(self, n):
        if self.batch_size == "auto":
            return n if self.solver in _FULL_BATCH else min(200, n)
        return min(int(self.batch_size), n)

    def _epoch(self, X, T, rng):
        """One pass over (X, T): returns the mean loss."""
        n = len(X)
        if getattr(self, "_optimizer", None) is None:     # none yet, or not pickled
            net = self._network()
            self._optimizer = self._make_optimizer(net.parameters())
            # one compiled step (traced once per batch shape, ~10 ms; 2x faster than eager
            # on digits' 200-row batches, measured); the L2 term's 1/batch is per shape too
            self._step = compile_step(net, lambda out, t: self._loss(out, t, len(t)),
                                      self._optimizer)
        bs, total, T = self._batch_size(n), 0.0, self._step_targets(T)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loss, _ = self._step(Tensor(X[idx]), Tensor(T[idx]))
            total += loss.item() * len(idx)
        # the compiled step moved the weights into one flat array (optim.fused): coefs_
        # and intercepts_ become views of it again, so they are the trained weights
        linears = [m for m in self._network() if isinstance(m, nn.Linear)]
        self.coefs_ = [lin.weight.data for lin in linears]
        self.intercepts_ = [lin.bias.data for lin in linears]
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(total / n)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_curve_[-1]:.8f}")
        return self.loss_curve_[-1]

    def _fit(self, X, y, incremental, classes=None):
        sizes = self._check_params()
        first = not (incremental or self.warm_start) or not hasattr(self, "coefs_")
        X, T = self._prepare(X, y, first, classes)
        if first:
            self._rng = check_random_state(self.random_state)
            self._initialize([X.shape[1], *sizes, T.shape[1]], self._rng)
        # small products run fastest on one BLAS thread (retrograd/blas.py: 10x on a busy box)
        work = blas.product_work(self._network(), self._batch_size(len(X)))
        with blas.limit("auto", work):
            if incremental:           # one epoch, no early stopping (as scikit-learn)
                self._epoch(X, T, self._rng)
                return self
            return self._train(X, T)

    def _train(self, X, T):
        """Epochs until the stopping rule or max_iter. As scikit-learn's, a warm start
        keeps the weights, the optimizer's state and n_iter_ but begins a new loss curve."""
        rng, X_val, y_val = self._rng, None, None
        self.loss_curve_, self.best_loss_, self._no_improvement_count = [], np.inf, 0
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        if self.early_stopping:
            stratify = (T.argmax(1) if T.shape[1] > 1 else T[:, 0]) if self._stratify else None
            X, X_val, T, y_val = train_test_split(X, T, test_size=self.validation_fraction,
                                                  random_state=rng, stratify=stratify)
            y_val = self._targets_to_y(y_val)
        for _ in range(self.max_iter):
            loss = self._epoch(X, T, rng)
            if self._no_improvement(loss, X_val, y_val):
                break
        else:
            warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning)
        if self.early_stopping:                   # keep the best weights seen
            for dst, src in zip(self.coefs_ + self.intercepts_, self._best):
                dst[...] = src
        return self

    def _no_improvement(self, loss, X_val, y_val):
        """scikit-learn's rule: stop after n_iter_no_change epochs that did not improve
        the best loss (or validation score) by tol."""
        if X_val is not None:
            score = self.score(X_val, y_val)
            self.validation_scores_.append(score)
            worse = score < self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best = [a.copy() for a in self.coefs_ + self.intercepts_]
        else:
            worse = loss > self.best_loss_ - self.tol
        self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
        if self._no_improvement_count > self.n_iter_no_change:
            if self.verbose:
                print(f"Training loss did not improve more than tol={self.tol} for "
                      f"{self.n_iter_no_change} consecutive epochs. Stopping.")
            return True
        return False

    def fit(self, X, y):
        """Train from scratch (or from the current weights with warm_start)."""
        return self._fit(X, y, incremental=False)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier (softmax cross-entropy; one logistic output
    unit for two classes, as scikit-learn's)."""

    _stratify = True

    def _prepare(self, X, y, first, classes=None):
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self.classes_ = unique_labels(y if classes is None else classes)
            self._binarizer = LabelBinarizer().fit(self.classes_)
        if not np.isin(y, self.classes_).all():
            raise ValueError(f"y has labels {sorted(set(np.unique(y)) - set(self.classes_))} "
                             f"that are not in classes_ {list(self.classes_)}")
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes; got 1 class "
                             f"({self.classes_[0]!r})")
        self.n_outputs_ = 1 if len(self.classes_) == 2 else len(self.classes_)
        self.out_activation_ = "logistic" if self.n_outputs_ == 1 else "softmax"
        return X, self._binarizer.transform(y).astype(np.float64)

    def _targets_to_y(self, T):
        return self._binarizer.inverse_transform(T)

    def _step_targets(self, T):
        """What the loss compares the output with: the 0/1 column for two classes, else
        the class indices."""
        return T if self.n_outputs_ == 1 else T.argmax(axis=1)

    def _data_loss(self, out, target):
        if self.n_outputs_ == 1:
            return F.binary_cross_entropy_with_logits(out, target)
        return F.cross_entropy(out, target)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "coefs_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict_proba(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        z = self._forward(X)
        if self.n_outputs_ == 1:
            p = 1.0 / (1.0 + np.exp(-z))
            return np.hstack([1.0 - p, p])
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        proba = self.predict_proba(X)         # checks it is fitted, before classes_
        return self.classes_[proba.argmax(axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor (squared error /2, identity output)."""

    _stratify = False
    out_activation_ = "identity"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True      # a 2-d y: one output unit per column
        return tags

    def _prepare(self, X, y, first, classes=None):
        X, y = validate_data(self, X, y, reset=first, dtype=np.float64, multi_output=True,
                             y_numeric=True)
        if first:
            self._y_ndim = y.ndim
        T = y.reshape(len(y), -1).astype(np.float64)
        if not first and T.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {T.shape[1]} outputs, the model {self.n_outputs_}")
        self.n_outputs_ = T.shape[1]
        return X, T

    def _targets_to_y(self, T):
        return T.ravel() if self._y_ndim == 1 else T

    def _step_targets(self, T):
        return T

    def _data_loss(self, out, target):
        return 0.5 * F.mse_loss(out, target)         # scikit-learn's squared loss / 2

    def partial_fit(self, X, y):
        """One epoch over (X, y), from the current weights."""
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        out = self._forward(X)
        return out.ravel() if self._y_ndim == 1 else out
