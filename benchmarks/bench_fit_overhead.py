"""Where a whole ``fit`` spends its time, per estimator, on ml-100k (all 100k ratings).

    python -m benchmarks.bench_fit_overhead                (needs MFLIB_DATA_DIR)
    python -m benchmarks.bench_fit_overhead --models sgd als --repeats 5

Every exported estimator (or ``--models``) with its default settings is fitted
``--repeats`` times in this process after one untimed fit (so its kernels are loaded),
and the fastest fit is kept; those of :data:`mflib.experiment.SMALL_PROBLEMS_ONLY`
(a dense Hessian that refuses ml-100k by design) are left out. Columns:

* ``fit s``: the whole ``model.fit(ratings)`` call;
* ``step s``: the solver's own iterations, the history's ``time`` (what notebooks plot);
* ``outside step %``: ``1 - step / fit`` (the target: below 15% for every estimator),
  split into ``loop %`` (inside the iteration loop but outside the steps: evaluation,
  state copies, callbacks) and ``setup+finalize %`` (checks, id maps, fallback, layout,
  initial state before the loop; public attributes after it).

With ``--fresh`` (default) each estimator's *first* fit also runs in a fresh process,
reporting its first recorded iteration beside the median one: the history's clock must
not hold numba's compilation or cache loading (``first iter s`` near ``median iter s``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from benchmarks.common import machine_line, print_table

FRESH_SCRIPT = r"""
import json, sys, time
import numpy as np
from mflib.data import load_dataset
from mflib.registry import make_estimator
ratings = load_dataset("ml-100k")
model = make_estimator(sys.argv[1])
t0 = time.perf_counter()
model.fit(ratings)
seconds = time.perf_counter() - t0
per = np.diff(np.r_[0.0, model.history_["time"]])
print(json.dumps({"first fit s": seconds, "first iter s": float(per[0]),
                  "median iter s": float(np.median(per))}))
"""


def measure(name: str, ratings, repeats: int) -> dict:
    from mflib.registry import make_estimator  # noqa: PLC0415

    make_estimator(name).fit(ratings)  # untimed: kernels loaded, layout cached
    best = None
    for _ in range(repeats):
        model = make_estimator(name)
        t0 = time.perf_counter()
        model.fit(ratings)
        fit = time.perf_counter() - t0
        h = model.history_
        step, loop = float(h["time"][-1]), float(h["wall_time"][-1])
        if best is None or fit < best["fit s"]:
            best = {"model": type(model).__name__, "iterations": model.n_iter_,
                    "fit s": fit, "step s": step,
                    "outside step %": 100 * (1 - step / fit),
                    "loop %": 100 * (loop - step) / fit,
                    "setup+finalize %": 100 * (fit - loop) / fit}
    return best


def fresh(name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, name], check=True,
                         capture_output=True, text=True, env={**os.environ,
                                                              "MFLIB_PROGRESS": "0"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    from mflib.data import load_dataset  # noqa: PLC0415
    from mflib.experiment import SMALL_PROBLEMS_ONLY  # noqa: PLC0415
    from mflib.registry import estimators  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=None,
                    help="registry names (default: every exported estimator)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed fits per estimator; the fastest is kept")
    ap.add_argument("--fresh", action=argparse.BooleanOptionalAction, default=True,
                    help="also time each estimator's first fit in a fresh process")
    ap.add_argument("--out", default="benchmarks/results/bench_fit_overhead.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("MFLIB_PROGRESS", "0")

    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    ratings = load_dataset("ml-100k")
    names = args.models
    if names is None:  # a dense-Hessian model refuses ml-100k by design (it says so)
        small = {name.lower() for name in SMALL_PROBLEMS_ONLY}
        names = [name for name in sorted(estimators()) if name not in small]
        print("left out (refuse problems of this size by design):",
              ", ".join(SMALL_PROBLEMS_ONLY), flush=True)
    rows = []
    for name in names:
        row = measure(name, ratings, args.repeats)
        if args.fresh:
            row.update(fresh(name))
        row["load"] = os.getloadavg()[0]
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    title = (f"Time outside the step per estimator, ml-100k ({ratings.nnz} ratings), default "
             f"settings, fastest of {args.repeats} fits; {machine_line()}")
    print_table(table, title, out=args.out)
    worst = table.loc[table["outside step %"].idxmax()]
    print(f"largest share outside the step: {worst['model']} {worst['outside step %']:.1f}% "
          f"(target < 15%); {int(np.sum(table['outside step %'] >= 15))} of {len(table)} "
          f"estimators at or above 15%")
    print("load average after:", os.getloadavg())


if __name__ == "__main__":
    main()
