"""retrograd.sklearn.MLPClassifier vs sklearn.neural_network.MLPClassifier on
scikit-learn's bundled data sets (digits, breast cancer, iris): test accuracy and fit
time side by side, same hidden sizes, solver, max_iter and seeds, features standardised.

    python bench/sklearn_compare.py                    # 3 seeds, hidden (100,), max_iter 200
    python bench/sklearn_compare.py --seeds 5 --hidden 64,32 --max-iter 100 --threads 1

Both fit under the same BLAS thread limit (--threads; default 1, since the small
products of these nets run fastest on one thread and an unlimited BLAS makes both
slower and noisier on a busy machine). Times are the median over seeds, accuracy the
mean on a stratified 25 % test split.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from retrograd.sklearn import MLPClassifier as RgMLP  # noqa: E402

DATA = {"digits": load_digits, "breast_cancer": load_breast_cancer, "iris": load_iris}


def run(make, X, y, seed):
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    model = make_pipeline(StandardScaler(), make(seed))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    return model.score(Xte, yte), seconds, model[-1].n_iter_


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hidden", default="100")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--solver", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    hidden = tuple(int(h) for h in a.hidden.split(","))
    kw = dict(hidden_layer_sizes=hidden, max_iter=a.max_iter, solver=a.solver)
    impls = {"scikit-learn": lambda s: SkMLP(random_state=s, **kw),
             "retrograd": lambda s: RgMLP(random_state=s, **kw)}
    print(f"hidden {hidden}, solver {a.solver}, max_iter {a.max_iter}, {a.seeds} seeds, "
          f"{a.threads} BLAS thread(s), load average {os.getloadavg()[0]:.2f}")
    print(f"{'data set':<14} {'n x d':>10} {'library':<13} {'accuracy':>9} {'fit s':>7} "
          f"{'epochs':>7}")
    with threadpool_limits(a.threads, user_api="blas"):
        for name, load in DATA.items():
            X, y = load(return_X_y=True)
            for impl, make in impls.items():
                rows = [run(make, X, y, s) for s in range(a.seeds)]
                acc = np.mean([r[0] for r in rows])
                sec = statistics.median(r[1] for r in rows)
                its = statistics.median(r[2] for r in rows)
                print(f"{name:<14} {f'{X.shape[0]}x{X.shape[1]}':>10} {impl:<13} {acc:>9.4f} "
                      f"{sec:>7.2f} {its:>7.0f}")


if __name__ == "__main__":
    main()
