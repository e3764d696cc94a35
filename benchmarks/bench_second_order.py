"""Second-order methods (issue 14): the Newton-CG target and what an iteration costs.

    python -m benchmarks.bench_second_order [--repeats 3] [--out FILE]   (MFLIB_DATA_DIR)

1. Target, on all of ml-100k at rank 10: seconds Newton-CG needs to reach a gradient
   norm of 1e-8 beside the seconds RGD needs for 1e-4 (each on its own objective, both
   scaled 1/(2N), solver time of the fit history, median over ``--repeats`` fits), for
   Newton-CG on ALS's objective (mean offset, biases as variables, lambda 10, the value
   validated for ALS in notebook 04) and on the bias-centred one (the offset RGD uses),
   RGD at its validated lambda 0.49 and at 10; with one thread and with the default
   threads. The ratio column is Newton-CG's seconds to 1e-8 over RGD's to 1e-4 in the
   same run.
2. The matrix-free methods on the Netflix course subset (training part), rank 10.
3. Seconds per operation on ml-100k at rank 10 (gradient, Hessian-vector product,
   preconditioner, ALS epoch).

The load average is printed before and after: the machine is shared, so absolute
seconds are noisy; ratios from one run are steadier.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, print_table
from mflib import RGD, LevenbergMarquardt, NewtonCG, load_dataset, load_predefined_split
from mflib.solvers.second_order_study import derivative_costs, first_reached

RANK = 10
NEWTON = {
    "Newton-CG, mean offset + biases (ALS's objective), lambda 10":
        {"regularization": 10.0},
    "Newton-CG, bias-centred (RGD's offset), lambda 10":
        {"regularization": 10.0, "bias_regularization": 5.0, "center": "biases",
         "use_bias": False},
}
RGDS = {"RGD, lambda 0.49 (validated)": 0.49, "RGD, lambda 10": 10.0}


def _seconds_to(model, threshold):
    table = first_reached({"m": model}, thresholds=(threshold,))
    return float(table.loc["m", f"seconds to {threshold:g}"]), \
        table.loc["m", f"iteration to {threshold:g}"]


def _models(n_jobs):
    out = {name: RGD(n_factors=RANK, regularization=lam, bias_regularization=5.0,
                     max_iter=200, tol=0.0, random_state=0, n_jobs=n_jobs)
           for name, lam in RGDS.items()}
    out.update({name: NewtonCG(n_factors=RANK, max_iter=200, tol=1e-8, random_state=0,
                               n_jobs=n_jobs, **params) for name, params in NEWTON.items()})
    return out


def target(ratings, repeats: int):
    """Fits interleaved (every method once per round, ``repeats`` rounds) so that a change
    of the machine's load during the run weighs on all of them alike."""
    rows = []
    for n_jobs in (1, None):
        fits = {name: [] for name in _models(n_jobs)}
        for _ in range(repeats):
            for name, model in _models(n_jobs).items():
                fits[name].append(model.fit(ratings))
        seconds = {name: float(np.median([_seconds_to(m, 1e-4 if name in RGDS else 1e-8)[0]
                                          for m in runs])) for name, runs in fits.items()}
        for name, runs in fits.items():
            threshold = 1e-4 if name in RGDS else 1e-8
            h = runs[0].history_
            row = {"n_jobs": n_jobs or "default", "method": name, "target": f"{threshold:g}",
                   "iterations": _seconds_to(runs[0], threshold)[1],
                   "seconds (median)": seconds[name],
                   "seconds (min, max)": f"{min(_seconds_to(m, threshold)[0] for m in runs):.3g}"
                                         f", {max(_seconds_to(m, threshold)[0] for m in runs):.3g}",
                   "objective": h["objective"][-1]}
            if name in NEWTON:
                row["CG products"] = int(h["hessian_products"][-1])
                row.update({f"ratio to {k}": seconds[name] / seconds[k] for k in RGDS})
            rows.append(row)
    return rows


def netflix(train):
    rows = []
    common = {"n_factors": RANK, "regularization": 10.0, "random_state": 0, "n_jobs": 1}
    for name, model in {"Newton-CG": NewtonCG(max_iter=200, **common),
                        "Levenberg-Marquardt": LevenbergMarquardt(max_iter=200, **common)
                        }.items():
        model.fit(train)
        h = model.history_
        reached = first_reached({name: model}).loc[name]
        rows.append({"method": name, "ratings": train.nnz, "iterations": model.n_iter_,
                     "stop": model.stop_reason_.split(":")[0],
                     "final grad_norm": h["grad_norm"][-1],
                     "seconds to 1e-4": reached["seconds to 0.0001"],
                     "seconds to 1e-8": reached["seconds to 1e-08"],
                     "solver seconds": h["time"][-1]})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bench_second_order.md")
    args = parser.parse_args(argv)
    header = f"{machine_line()}, load average before {os.getloadavg()[0]:.2f}\n"
    print(header, flush=True)
    ratings = load_dataset("ml-100k", download=False)
    titles = [f"Target: ml-100k ({ratings.nnz} ratings), rank {RANK}: Newton-CG to 1e-8 "
              "vs RGD to 1e-4 (solver seconds)",
              f"Netflix course subset (training part), rank {RANK}, one thread",
              f"Seconds per operation, ml-100k, rank {RANK}, one thread"]
    parts = [print_table(target(ratings, args.repeats), titles[0])]
    parts.append(print_table(netflix(load_predefined_split("netflix", "course",
                                                           download=False).train), titles[1]))
    costs = derivative_costs(ratings, RANK, 10.0, n_jobs=1).reset_index()
    parts.append(print_table(costs, titles[2]))
    footer = f"load average after {os.getloadavg()[0]:.2f}\n"
    print(footer)
    text = header + "\n" + "\n".join(
        f"## {t}\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"
        for t, df in zip(titles, parts, strict=True)) + "\n" + footer
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
