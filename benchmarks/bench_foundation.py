"""Load times of the local datasets and the baseline RMSE table.

    python -m benchmarks.bench_foundation          (needs MFLIB_DATA_DIR)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import machine_line, print_table
from mflib import BiasBaseline, GlobalMean, ItemMean, UserItemMean, UserMean
from mflib.data import load_dataset, load_predefined_split
from mflib.experiment import compare


def load_times(names=("ml-100k", "ml-latest-small", "netflix"), repeats=5):
    rows = []
    for name in names:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rm = load_dataset(name, download=False)
            times.append(time.perf_counter() - t0)
        rows.append({"dataset": name, "ratings": rm.nnz, "first load (s)": times[0],
                     "median load (s)": statistics.median(times)})
    return rows


def baseline_table():
    def models():
        return {"global mean": GlobalMean(), "user mean": UserMean(), "item mean": ItemMean(),
                "(user + item mean) / 2": UserItemMean(),
                "biases (λ=5)": BiasBaseline(regularization=5.0)}

    tables = {}
    for label, (name, split) in {"netflix course": ("netflix", "course"),
                                 "ml-100k u1": ("ml-100k", "u1")}.items():
        tables[label] = compare(models(), load_predefined_split(name, split))["test_rmse"]
    return pd.DataFrame(tables).rename_axis("baseline").reset_index()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="loads per dataset")
    ap.add_argument("--out", default="benchmarks/results/bench_foundation.md")
    args = ap.parse_args(argv)
    print(machine_line(), "| load average", os.getloadavg(), flush=True)
    sections = [
        ("Dataset load time (parse + checksum, from MFLIB_DATA_DIR)",
         print_table(load_times(repeats=args.repeats),
                     "Dataset load time (parse + checksum, from MFLIB_DATA_DIR)")),
        ("Baseline test RMSE", print_table(baseline_table(), "Baseline test RMSE")),
    ]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(machine_line() + "\n\n" + "\n".join(
            f"## {title}\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"
            for title, df in sections))


if __name__ == "__main__":
    main()
