"""retrograd.sklearn's MLPClassifier / MLPRegressor against scikit-learn itself: its
check_estimator suite, Pipeline, GridSearchCV, partial_fit, and the learned attributes
of sklearn.neural_network's MLP (issue 15, item 4)."""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_breast_cancer, load_iris, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from retrograd.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_sklearn_check_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.parametrize("solver", ["adam", "sgd", "rprop", "quickprop"])
def test_every_solver_learns_iris(solver):
    X, y = _iris()
    lr = {"sgd": 0.05, "rprop": 0.01, "quickprop": 0.01}.get(solver, 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = MLPClassifier((16,), solver=solver, learning_rate_init=lr, max_iter=300,
                          random_state=0).fit(X, y)
    assert m.score(X, y) > 0.9
    assert m.n_iter_ == len(m.loss_curve_) and m.loss_curve_[-1] < m.loss_curve_[0]


def test_learned_attributes_have_sklearns_shapes():
    X, y = _iris()
    ours = MLPClassifier((7, 5), max_iter=5, random_state=0)
    from sklearn.neural_network import MLPClassifier as Theirs
    theirs = Theirs((7, 5), max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y), theirs.fit(X, y)
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in theirs.intercepts_]
    for name in ("classes_", "n_features_in_", "n_layers_", "n_outputs_", "out_activation_",
                 "n_iter_"):
        assert np.all(getattr(ours, name) == getattr(theirs, name)), name
    assert len(ours.loss_curve_) == 5
    # binary: one logistic output unit, as scikit-learn's
    Xb, yb = load_breast_cancer(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mb = MLPClassifier((4,), max_iter=3, random_state=0).fit(Xb, yb)
    assert mb.coefs_[-1].shape == (4, 1) and mb.out_activation_ == "logistic"
    p = mb.predict_proba(Xb)
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_pipeline_and_grid_search():
    X, y = load_breast_cancer(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=50, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(8,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert grid.best_score_ > 0.9 and len(grid.cv_results_["params"]) == 4
    assert grid.score(X, y) > 0.95


def test_partial_fit_needs_classes_first_then_continues():
    X, y = _iris()
    m = MLPClassifier((10,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        m.partial_fit(X, y)
    m.partial_fit(X[:50], y[:50], classes=[0, 1, 2])        # only class 0 in this chunk
    assert list(m.classes_) == [0, 1, 2] and m.coefs_[-1].shape == (10, 3)
    for _ in range(100):
        m.partial_fit(X, y)
    assert m.n_iter_ == 101 and m.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        m.partial_fit(X[:2], [0, 7])


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    m = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=500,
                      random_state=0).fit(X, y)
    assert m.n_iter_ < 500 and len(m.validation_scores_) == m.n_iter_
    assert m.best_validation_score_ == max(m.validation_scores_)


def test_regressor_multioutput_pickle_and_l2():
    X, Y = make_regression(200, 5, n_targets=2, noise=0.1, random_state=0)
    Y = Y / Y.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = MLPRegressor((32,), learning_rate_init=0.01, max_iter=300, random_state=0).fit(X, Y)
        big = MLPRegressor((32,), alpha=10.0, learning_rate_init=0.01, max_iter=300,
                           random_state=0).fit(X, Y)
    assert m.predict(X).shape == (200, 2) and m.score(X, Y) > 0.9
    assert sum((c ** 2).sum() for c in big.coefs_) < sum((c ** 2).sum() for c in m.coefs_)
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    back.partial_fit(X, Y)                   # trains on after unpickling
    assert back.n_iter_ == m.n_iter_ + 1


def test_bad_parameters_are_refused_in_fit():
    X, y = _iris()
    for kw in ({"solver": "lbfgs"}, {"activation": "softplus"}, {"hidden_layer_sizes": (0,)},
               {"batch_size": 0}):
        with pytest.raises(ValueError):
            MLPClassifier(**kw).fit(X, y)


def test_warm_start_continues_from_the_weights():
    X, y = _iris()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = MLPClassifier((8,), max_iter=5, warm_start=True, random_state=0).fit(X, y)
        first = [c.copy() for c in m.coefs_]
        loss = m.loss_curve_[-1]
        m.fit(X, y)
    assert m.n_iter_ == 10 and len(m.loss_curve_) == 5
    assert m.loss_curve_[0] < loss * 1.01                  # went on, did not restart
    assert not np.array_equal(first[0], m.coefs_[0])


def test_coefs_are_the_trained_weights():
    X, Y = make_regression(100, 4, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = MLPRegressor((6,), max_iter=20, random_state=0).fit(X, Y / Y.std())
    (w0, w1), (b0, b1) = m.coefs_, m.intercepts_
    by_hand = np.maximum(X @ w0 + b0, 0) @ w1 + b1          # relu hidden, identity output
    np.testing.assert_allclose(m.predict(X), by_hand.ravel(), rtol=1e-10, atol=1e-12)
    fresh = MLPRegressor((6,), max_iter=1, random_state=0)
    fresh._check_params()
    fresh._initialize([4, 6, 1], np.random.RandomState(0))
    assert not np.allclose(fresh.coefs_[0], w0)                 # it did train
