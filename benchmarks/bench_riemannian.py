"""Targets of the Riemannian family (issue 6).

    python -m benchmarks.bench_riemannian [--skip-10m]      (needs MFLIB_DATA_DIR)

1. RGD vs ALS on the quick profile (ml-100k, random 70/10/20 split, seed 0, rank 10):
   validation RMSE and time, each at the regularisation chosen from a small grid on the
   validation set (their penalties are different functions: lam^2 |W|^2 with U
   orthonormal, vs lam (|P|^2 + |Q|^2)).
2. R-SVRG vs RGD: user-gradients R-SVRG needs to reach RGD's final objective (30
   iterations) from the same initial point, for seed 0 and over 8 seeds ("inf": not
   reached in 16 epochs).
3. Seconds per RGD iteration on the 10M-rating synthetic matrix at rank 10.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, print_table
from mflib import RGD, RSVRG, load_dataset, make_low_rank, make_split
from mflib.solvers.als import ALS
from mflib.solvers.riemannian import ArmijoLineSearch

RANK = 10
ALS_GRID = (5.0, 10.0, 20.0)
RGD_GRID = ((0.25, 5.0), (0.49, 5.0), (1.0, 10.0))  # (regularization, bias_regularization)


def quick_split():
    return make_split(load_dataset("ml-100k", download=False), "random", test_size=0.2,
                      val_size=0.1, random_state=0)


def _row(name, params, model):
    h = model.history_
    return {"model": name, "params": params, "iterations": model.n_iter_,
            "val_rmse": h["val_rmse"][-1], "solver_s": h["time"][-1],
            "wall_s": h["wall_time"][-1]}


def rgd_vs_als(split):
    rows = []
    for lam in ALS_GRID:
        m = ALS(n_factors=RANK, regularization=lam, random_state=0, verbose=0)
        rows.append(_row("ALS", f"regularization={lam:g}",
                         m.fit(split.train, eval_set=split.validation)))
    for lam, bias_lam in RGD_GRID:
        m = RGD(n_factors=RANK, regularization=lam, bias_regularization=bias_lam,
                max_iter=60, tol=1e-6, random_state=0, verbose=0)
        rows.append(_row("RGD", f"regularization={lam:g}, bias_regularization={bias_lam:g}",
                         m.fit(split.train, eval_set=split.validation)))
    return rows


SVRG_VARIANTS = {
    "R-SVRG (default: count sampling, momentum 0.6)": {},
    "R-SVRG, momentum 0": {"momentum": 0.0},
    "R-SVRG, momentum 0, Poisson sampling": {"momentum": 0.0, "sampling": "poisson"},
    "R-SVRG, momentum 0, SVRG-BB steps": {"momentum": 0.0, "learning_rate": "bb"},
    "R-SVRG, momentum 0, uniform sampling": {"momentum": 0.0, "sampling": "uniform"},
}


def svrg_gradient_count(split, rgd_iter=30, svrg_epochs=16, seeds=range(8)):
    """User-gradients R-SVRG needs to reach the objective of ``rgd_iter`` RGD iterations
    from the same initial point (same seed), as a fraction of RGD's; RGD with BB initial
    steps (the default) and with doubled previous steps. Every per-user solve counts:
    snapshots, inner steps, line-search trials. Seed 0 is the headline; the other seeds
    (other initial points and minibatches) show the spread."""
    params = dict(n_factors=RANK, regularization=0.49, bias_regularization=5.0, tol=0.0,
                  verbose=0)
    rows, targets = [], {}
    for initial in ("bb", "previous"):
        for seed in seeds:
            rgd = RGD(max_iter=rgd_iter, line_search=ArmijoLineSearch(initial=initial),
                      random_state=seed, **params).fit(split.train)
            targets[initial, seed] = (rgd.history_["objective"][-1],
                                      rgd.history_["user_gradients"][-1])
        rows.append({"method": f"RGD (initial={initial}), {rgd_iter} iterations",
                     "objective (seed 0)": targets[initial, 0][0],
                     "user_gradients (seed 0)": targets[initial, 0][1]})
    for name, variant in SVRG_VARIANTS.items():
        ratios = {"bb": [], "previous": []}
        for seed in seeds:
            svrg = RSVRG(max_iter=svrg_epochs, batch_size=64, random_state=seed,
                         **{**params, **variant}).fit(split.train)
            obj, ug = svrg.history_["objective"], svrg.history_["user_gradients"]
            if seed == 0:
                row = {"method": name, "objective (seed 0)": obj[-1]}
            for initial in ratios:
                target, rgd_count = targets[initial, seed]
                hit = np.flatnonzero(obj <= target)
                ratios[initial].append(ug[hit[0]] / rgd_count if hit.size else np.inf)
                if seed == 0:
                    row[f"user_gradients to RGD({initial})"] = ug[hit[0]] if hit.size \
                        else np.nan
        for initial, r in ratios.items():
            r = np.array(r)
            row[f"ratio to RGD({initial}), seed 0"] = r[0]
            row[f"median ratio to RGD({initial}), {len(r)} seeds"] = float(np.median(r))
            row[f"seeds <= 0.5 vs RGD({initial})"] = f"{int(np.sum(r <= 0.5))}/{len(r)}"
        rows.append(row)
    return rows


def rgd_10m(n_iter=4):
    rm, _ = make_low_rank(70000, 10000, RANK, density=1e7 / 7e8, random_state=0)
    m = RGD(n_factors=RANK, max_iter=n_iter, tol=0.0, random_state=0, verbose=0).fit(rm)
    per_iter = np.diff(np.r_[0.0, m.history_["time"]])
    return [{"ratings": rm.nnz, "iterations": m.n_iter_,
             "median s/iteration": float(np.median(per_iter)),
             "max s/iteration": float(per_iter.max()),
             "evaluations/iteration": float(np.mean(m.history_["evaluations"]))}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-10m", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/bench_riemannian.md")
    args = parser.parse_args(argv)
    header = f"{machine_line()}, load average before {os.getloadavg()[0]:.1f}\n\n"
    print(header, flush=True)
    split = quick_split()
    parts = [print_table(rgd_vs_als(split), "RGD vs ALS, ml-100k quick profile (rank 10)"),
             print_table(svrg_gradient_count(split), "User-gradients to reach RGD's objective")]
    titles = ["RGD vs ALS, ml-100k quick profile (rank 10)",
              "User-gradients to reach RGD's objective"]
    if not args.skip_10m:
        t0 = time.perf_counter()
        rows = rgd_10m()
        titles.append(f"RGD on the 10M-rating synthetic matrix (rank 10; "
                      f"{time.perf_counter() - t0:.0f} s with generation)")
        parts.append(print_table(rows, titles[-1]))
    footer = f"load average after {os.getloadavg()[0]:.1f}\n"
    print(footer)
    text = header + "\n".join(f"## {t}\n\n" + df.to_markdown(index=False, floatfmt=".4g")
                               + "\n" for t, df in zip(titles, parts, strict=True)) + "\n" + footer
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
