"""Second-order methods (issue 14): the Newton-CG target and what an iteration costs.

    python -m benchmarks.bench_second_order [--repeats 5] [--seeds 5] [--out FILE]
    (MFLIB_DATA_DIR)

1. Target, on all of ml-100k at rank 10: seconds Newton-CG needs to reach a gradient
   norm of 1e-8 beside the seconds RGD needs for 1e-4 (each on its own objective, both
   scaled 1/(2N), solver time of the fit history, which includes every sweep and the
   users' first solve; median over ``--repeats`` fits of seed 0), with one thread and
   with the default threads. Newton-CG runs on the bias-centred objective (the offset
   RGD uses) at lambda 10 (the value validated for ALS in notebook 04): on the reduced
   objective (users eliminated, the default), after 5 ALS sweeps, and on all variables
   (the joint method); and on ALS's objective (mean offset, biases as variables). RGD at
   its validated lambda 0.49 and at 10. The ratio columns are Newton-CG's seconds to
   1e-8 over RGD's to 1e-4 in the same run.
2. The same ratio per random start (``--seeds`` seeds, one thread, one fit each): the
   paths through the non-convex phase differ by seed, and so do the seconds.
3. Why: the extreme eigenvalues of the reduced Hessian as CG sees it (item-block
   preconditioned) after the 5 warm-start sweeps and at the converged point.
4. The matrix-free methods on the Netflix course subset (training part), rank 10.
5. Seconds per operation on ml-100k at rank 10 (gradient, Hessian-vector products,
   preconditioner, ALS epoch).

Every fit of a round runs before the next round starts (interleaved), so a change of
the machine's load weighs on all methods alike; the load average is printed with each
table: the machine is shared, so absolute seconds are noisy; ratios from one run are
steadier.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, print_table
from mflib import RGD, LevenbergMarquardt, NewtonCG, load_dataset, load_predefined_split
from mflib.execution import ExecutionPolicy, use_policy
from mflib.solvers.second_order import factorization_problem
from mflib.solvers.second_order_study import (
    derivative_costs,
    first_reached,
    reduced_hessian_eigenvalues,
)

RANK = 10
CENTRED = {"regularization": 10.0, "bias_regularization": 5.0, "center": "biases",
           "use_bias": False}
NEWTON = {
    "Newton-CG reduced (users eliminated), bias-centred, lambda 10": CENTRED,
    "Newton-CG reduced after 5 ALS sweeps, bias-centred, lambda 10":
        {**CENTRED, "warm_start_sweeps": 5},
    "Newton-CG on all variables, bias-centred, lambda 10":
        {**CENTRED, "variable_projection": False},
    "Newton-CG reduced, mean offset + biases (ALS's objective), lambda 10":
        {"regularization": 10.0},
}
RGDS = {"RGD, lambda 0.49 (validated)": 0.49, "RGD, lambda 10": 10.0}
REFERENCE = "RGD, lambda 0.49 (validated)"


def _threshold(name):
    return 1e-4 if name in RGDS else 1e-8


def _seconds_to(model, threshold):
    table = first_reached({"m": model}, thresholds=(threshold,))
    return float(table.loc["m", f"seconds to {threshold:g}"]), \
        table.loc["m", f"iteration to {threshold:g}"]


def _models(n_jobs, random_state=0):
    out = {name: RGD(n_factors=RANK, regularization=lam, bias_regularization=5.0,
                     max_iter=200, tol=0.0, random_state=random_state, n_jobs=n_jobs)
           for name, lam in RGDS.items()}
    out.update({name: NewtonCG(n_factors=RANK, max_iter=200, tol=1e-8,
                               random_state=random_state, n_jobs=n_jobs, **params)
                for name, params in NEWTON.items()})
    return out


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def target(ratings, repeats: int):
    """Fits interleaved (every method once per round, ``repeats`` rounds) so that a change
    of the machine's load during the run weighs on all of them alike."""
    rows = []
    for n_jobs in (1, None):
        fits = {name: [] for name in _models(n_jobs)}
        load = _load()
        for _ in range(repeats):
            for name, model in _models(n_jobs).items():
                fits[name].append(model.fit(ratings))
        seconds = {name: float(np.median([_seconds_to(m, _threshold(name))[0] for m in runs]))
                   for name, runs in fits.items()}
        for name, runs in fits.items():
            threshold = _threshold(name)
            h = runs[0].history_
            reached = [_seconds_to(m, threshold)[0] for m in runs]
            row = {"n_jobs": n_jobs or "default", "load": f"{load}-{_load()}", "method": name,
                   "target": f"{threshold:g}",
                   "iterations": _seconds_to(runs[0], threshold)[1],
                   "seconds (median)": seconds[name],
                   "seconds (min, max)": f"{min(reached):.3g}, {max(reached):.3g}",
                   "objective": h["objective"][-1]}
            if name in NEWTON:
                row["seconds to 1e-4 (median)"] = float(np.median(
                    [_seconds_to(m, 1e-4)[0] for m in runs]))
                row["Hessian products"] = int(h["hessian_products"][-1])
                row.update({f"ratio to {k}": seconds[name] / seconds[k] for k in RGDS})
            rows.append(row)
    return rows


def by_seed(ratings, n_seeds: int):
    """Newton-CG's seconds to 1e-8 over RGD's (lambda 0.49) to 1e-4, one thread, for each
    of ``n_seeds`` random starts (one fit per method and seed, interleaved)."""
    ratios = {name: [] for name in NEWTON}
    load = _load()
    for seed in range(n_seeds):
        fitted = {name: model.fit(ratings) for name, model in _models(1, seed).items()
                  if name in NEWTON or name == REFERENCE}
        rgd = _seconds_to(fitted[REFERENCE], 1e-4)[0]
        for name in NEWTON:
            ratios[name].append(_seconds_to(fitted[name], 1e-8)[0] / rgd)
    return [{"method": name, "load": f"{load}-{_load()}", "seeds": n_seeds,
             "ratio (median)": float(np.median(r)), "ratio (min)": float(np.min(r)),
             "ratio (max)": float(np.max(r)), "seeds below 1": int(np.sum(np.array(r) < 1)),
             "ratios": ", ".join(f"{v:.2f}" for v in r)} for name, r in ratios.items()]


def spectrum(ratings):
    """Why the 1e-8 costs what it does: extreme eigenvalues of the reduced Hessian (item-
    block preconditioned, what CG sees) on the bias-centred objective at lambda 10, after
    the 5 ALS sweeps of the warm start and at the converged point of seed 0."""
    problem = factorization_problem(ratings, RANK, 10.0, 5.0, "biases", False)
    reduced = problem.reduced()
    rows = []
    rotations = RANK * (RANK - 1) // 2
    for label, params in (("after 5 ALS sweeps", {"warm_start_sweeps": 5, "max_iter": 5}),
                          ("converged to 1e-8", {"max_iter": 200, "tol": 1e-8})):
        model = NewtonCG(n_factors=RANK, random_state=0, n_jobs=1,
                         **{**CENTRED, **params}).fit(ratings)
        y = reduced.item_part(problem.pack(model.user_factors_, model.item_factors_))
        with use_policy(ExecutionPolicy(1)):
            low = reduced_hessian_eigenvalues(reduced, y, n=rotations + 5)
            high = reduced_hessian_eigenvalues(reduced, y, n=1, which="LA")[-1]
        near_zero = np.abs(low) < 1e-6
        above = low[low >= 1e-6]
        rows.append({"point": label, "load": _load(),
                     "grad_norm": model.history_["grad_norm"][-1],
                     "smallest": low[0], f"negative (of the {len(low)} smallest)":
                         int(np.sum(low < -1e-6)),
                     "|eigenvalue| < 1e-6": int(near_zero.sum()),
                     "smallest above 1e-6": above[0] if above.size else np.nan,
                     "largest": high,
                     "largest / smallest above 1e-6": high / above[0] if above.size
                     else np.nan,
                     "the 5 smallest": ", ".join(f"{v:.3g}" for v in low[:5])})
    return rows


def netflix(train):
    rows = []
    common = {"n_factors": RANK, "regularization": 10.0, "random_state": 0, "n_jobs": 1}
    for name, model in {"Newton-CG (reduced)": NewtonCG(max_iter=200, **common),
                        "Newton-CG (all variables)": NewtonCG(
                            max_iter=200, variable_projection=False, **common),
                        "Levenberg-Marquardt": LevenbergMarquardt(max_iter=200, **common)
                        }.items():
        model.fit(train)
        h = model.history_
        reached = first_reached({name: model}).loc[name]
        rows.append({"method": name, "load": _load(), "ratings": train.nnz,
                     "iterations": model.n_iter_,
                     "stop": model.stop_reason_.split(":")[0],
                     "final grad_norm": h["grad_norm"][-1],
                     "seconds to 1e-4": reached["seconds to 0.0001"],
                     "seconds to 1e-8": reached["seconds to 1e-08"],
                     "solver seconds": h["time"][-1]})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/bench_second_order.md")
    args = parser.parse_args(argv)
    header = f"{machine_line()}, load average before {os.getloadavg()[0]:.2f}\n"
    print(header, flush=True)
    ratings = load_dataset("ml-100k", download=False)
    titles = [f"Target: ml-100k ({ratings.nnz} ratings), rank {RANK}: Newton-CG to 1e-8 "
              "vs RGD to 1e-4 (solver seconds, seed 0)",
              "Newton-CG's seconds to 1e-8 over RGD's (lambda 0.49) to 1e-4 by random start, "
              "one thread",
              f"Curvature of the reduced problem (item-block preconditioned), ml-100k, rank "
              f"{RANK}, bias-centred, lambda 10: {RANK * (RANK - 1) // 2} rotations P O, Q O",
              f"Netflix course subset (training part), rank {RANK}, one thread",
              f"Seconds per operation, ml-100k, rank {RANK}, one thread"]
    parts = [print_table(target(ratings, args.repeats), titles[0])]
    parts.append(print_table(by_seed(ratings, args.seeds), titles[1]))
    parts.append(print_table(spectrum(ratings), titles[2]))
    parts.append(print_table(netflix(load_predefined_split("netflix", "course",
                                                           download=False).train), titles[3]))
    costs = derivative_costs(ratings, RANK, 10.0, n_jobs=1).reset_index()
    parts.append(print_table(costs, titles[4]))
    footer = f"load average after {os.getloadavg()[0]:.2f}\n"
    print(footer)
    text = header + "\n" + "\n".join(
        f"## {t}\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"
        for t, df in zip(titles, parts, strict=True)) + "\n" + footer
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
