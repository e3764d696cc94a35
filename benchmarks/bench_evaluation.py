"""Issue 13's accuracy targets, measured with notebook 07's protocol.

    python -m benchmarks.bench_evaluation                 (full grids, u1...u5 + Netflix)
    python -m benchmarks.bench_evaluation --grid quick    (the quick profile's grids)
    python -m benchmarks.bench_evaluation --defaults      (every rating model's defaults)

Every family of :func:`mflib.experiment.evaluation_families` is tuned on a validation part
(``--val-size`` of the split's training ratings, never its test part), fitted on all the
training ratings and scored on the test part; the blend of all families fits its weights
on the same validation part (:func:`mflib.experiment.evaluate_families`). Printed: the
per-split table, the 5-fold summary, and the targets:

* ml-100k u1.test: BayesianMF <= 0.910, the blend <= 0.900;
* ml-100k u1...u5: mean test RMSE of the blend <= 0.900;
* Netflix course split: the blend at least 0.02 below the regularised bias baseline
  (``BiasBaseline()`` with its default, and the bias-baseline family tuned on validation).

``--defaults`` fits every exported rating model with its default parameters (seeded) on
ml-100k u1 and the Netflix course split and prints its test RMSE beside
``BiasBaseline()``'s: what ``tests/test_defaults.py`` asserts, as a table.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from benchmarks.common import machine_line, print_table
from mflib import BiasBaseline
from mflib.experiment import (
    default_estimators,
    evaluate_families,
    evaluation_families,
    fold_summary,
    load_splits,
    paired_comparison,
)
from mflib.metrics import rmse


def targets(table: pd.DataFrame, splits: dict, folds: list[str]) -> pd.DataFrame:
    """The issue's targets against what ``table`` measured."""
    def score(split, model):
        rows = table[(table["split"] == split) & (table["model"] == model)]
        return float(rows["test_rmse"].iloc[0]) if len(rows) else float("nan")

    rows = []
    u1 = "ml-100k/u1"
    if u1 in splits:
        rows.append({"target": "u1.test BayesianMF <= 0.910", "measured": score(u1, "BayesianMF"),
                     "bound": 0.910})
        rows.append({"target": "u1.test blend <= 0.900", "measured": score(u1, "blend"),
                     "bound": 0.900})
    names = [f"ml-100k/{f}" for f in folds if f"ml-100k/{f}" in splits]
    if names:
        blend = table[(table["model"] == "blend") & table["split"].isin(names)]["test_rmse"]
        rows.append({"target": f"mean over {len(names)} folds: blend <= 0.900",
                     "measured": float(blend.mean()), "bound": 0.900})
    nf = "netflix/course"
    if nf in splits:
        split = splits[nf]
        default = BiasBaseline().fit(split.train)
        base = rmse(split.test.ratings, default.predict(split.test))
        rows.append({"target": "Netflix: blend <= BiasBaseline() - 0.02",
                     "measured": score(nf, "blend"), "bound": base - 0.02})
        rows.append({"target": "Netflix: blend <= tuned bias baseline - 0.02",
                     "measured": score(nf, "blend"),
                     "bound": score(nf, "bias baseline") - 0.02})
    out = pd.DataFrame(rows)
    out["met"] = out["measured"] <= out["bound"]
    return out


def defaults_table(seed=0) -> pd.DataFrame:
    """Test RMSE and fit seconds of every rating model with its defaults on ml-100k u1
    and the Netflix course split, beside BiasBaseline()'s."""
    splits = load_splits({"ml-100k": ["u1"], "netflix": ["course"]})
    rows = {}
    for split_name, split in splits.items():
        base = BiasBaseline().fit(split.train)
        base_rmse = rmse(split.test.ratings, base.predict(split.test))
        for name, model in default_estimators(random_state=seed).items():
            t0 = time.perf_counter()
            model.fit(split.train)
            seconds = time.perf_counter() - t0
            score = rmse(split.test.ratings, model.predict(split.test))
            row = rows.setdefault(name, {"model": name})
            row[f"{split_name} RMSE"] = score
            row[f"{split_name} - BiasBaseline()"] = score - base_rmse
            row[f"{split_name} fit s"] = seconds
        print(f"{split_name}: BiasBaseline() {base_rmse:.4f}", flush=True)
    return pd.DataFrame(list(rows.values())).sort_values("ml-100k/u1 RMSE")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=("quick", "full"), default="full")
    ap.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"])
    ap.add_argument("--no-netflix", action="store_true")
    ap.add_argument("--val-size", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--defaults", action="store_true",
                    help="only the table of every rating model with its defaults")
    ap.add_argument("--out", default="benchmarks/results/bench_evaluation.md")
    args = ap.parse_args(argv)

    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    if args.defaults:
        print_table(defaults_table(args.seed).round(4),
                    "Every rating model with its defaults (random_state 0), test RMSE",
                    out=args.out.replace(".md", "_defaults.md") if args.out else None)
        print("load average after:", os.getloadavg())
        return
    predefined = {"ml-100k": args.folds}
    if not args.no_netflix:
        predefined["netflix"] = ["course"]
    splits = load_splits(predefined)
    families = evaluation_families(args.grid, random_state=args.seed)
    t0 = time.perf_counter()
    result = evaluate_families(families, splits, val_size=args.val_size,
                               random_state=args.seed)
    minutes = (time.perf_counter() - t0) / 60
    table = result.table
    shown = table.drop(columns=["stop_reason"]).round(4)
    sections = [print_table(shown, f"Every split ({args.grid} grids, {minutes:.1f} min, load "
                                   f"{os.getloadavg()[0]:.1f})")]
    summary = fold_summary(table, ("test_rmse", "test_mae", "ndcg@10", "fit_seconds"),
                           dataset="ml-100k")
    sections.append(print_table(summary.reset_index().round(4),
                                f"ml-100k {', '.join(args.folds)}: mean and std over folds"))
    if len(args.folds) > 1:
        sections.append(print_table(paired_comparison(table, dataset="ml-100k").round(4),
                                    "Paired comparison of the 3 best (test RMSE)"))
    sections.append(print_table(result.weights().reset_index().round(3), "Blend weights"))
    sections.append(print_table(targets(table, splits, args.folds).round(4), "Targets"))
    if args.out:
        from pathlib import Path  # noqa: PLC0415

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(s.to_markdown(index=False) for s in sections))
    print("load average after:", os.getloadavg())


if __name__ == "__main__":
    main()
