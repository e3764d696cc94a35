"""``python -m mflib {data,fit,evaluate,reports,bench}``.

Models are found by name in :mod:`mflib.registry`, so every exported estimator is
usable here without changes to this file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from .data import REGISTRY, fetch, load_dataset, load_predefined_split, make_split
from .data.datasets import DataNotFoundError, get_dataset
from .data.split import SPLITS
from .metrics import ranking_metrics, rating_metrics
from .registry import estimators, make_estimator


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def _split(args):
    ds = get_dataset(args.dataset)
    if args.split in ds.splits:
        return load_predefined_split(args.dataset, args.split)
    if args.split not in SPLITS:
        choices = list(SPLITS) + list(ds.splits)
        raise SystemExit(f"unknown split {args.split!r} for {args.dataset}; choose from {choices}")
    rm = load_dataset(args.dataset)
    kw = {"random_state": args.seed} if args.split != "temporal" else {}
    if args.split == "temporal":
        kw["fractions"] = ((1 - args.test_size - args.val_size, args.val_size, args.test_size)
                           if args.val_size else (1 - args.test_size, args.test_size))
    elif args.split == "cold_start":
        kw.update(item_fraction=args.test_size, val_size=args.val_size)
    else:
        kw.update(test_size=args.test_size, val_size=args.val_size)
    return make_split(rm, args.split, **kw)


def _show(obj) -> None:
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(obj)


def cmd_data(args) -> int:
    if args.action == "list":
        rows = []
        for name, ds in REGISTRY.items():
            try:
                where = str(fetch(name, download=False, verify=False))
            except DataNotFoundError:
                where = "(not downloaded)"
            rows.append((name, ds.description, where))
        _show(pd.DataFrame(rows, columns=["name", "description", "local copy"]).set_index("name"))
        return 0
    if not args.name:
        raise SystemExit(f"`data {args.action}` needs a dataset name: {', '.join(REGISTRY)}")
    if args.action == "fetch":
        print(fetch(args.name))
        return 0
    ds = get_dataset(args.name)
    print(f"{ds.name}: {ds.description}\nurl: {ds.url}\ncitation: {ds.citation}")
    if ds.splits:
        print("predefined splits:", ", ".join(ds.splits))
    _show(load_dataset(args.name).summary().to_frame("value"))
    return 0


def _evaluate(model, split, k: int) -> pd.DataFrame:
    rows = [rating_metrics(model, split.test)]
    rows.append(ranking_metrics(model, split.test, k=k).drop("users"))
    return pd.concat(rows).to_frame(type(model).__name__)


def cmd_fit(args) -> int:
    params = dict(args.param or [])
    model = make_estimator(args.model, **params)
    split = _split(args)
    print(split)
    eval_set = split.validation if split.validation is not None else None
    model.fit(split.train, eval_set=eval_set)
    print(f"{type(model).__name__}: {model.n_iter_} iteration(s), stopped: {model.stop_reason_}")
    _show(_evaluate(model, split, args.k))
    if args.save:
        print("saved to", model.save(args.save))
    return 0


def cmd_evaluate(args) -> int:
    from .base import FactorizationEstimator  # noqa: PLC0415

    model = FactorizationEstimator.load(args.model_file)
    _show(_evaluate(model, _split(args), args.k))
    return 0


def cmd_reports(args) -> int:
    from .experiment import run_reports  # noqa: PLC0415

    run_reports(args.profile, select=args.notebooks, html=not args.no_html,
                output_dir=args.output_dir)
    return 0


def cmd_bench(args) -> int:
    bench_dir = Path("benchmarks")
    available = sorted(p.stem.removeprefix("bench_") for p in bench_dir.glob("bench_*.py"))
    if args.name not in available:
        raise SystemExit(f"unknown benchmark {args.name!r}; run from the repository root; "
                         f"available: {', '.join(available) or 'none'}")
    cmd = [sys.executable, "-m", f"benchmarks.bench_{args.name}", *args.extra]
    return subprocess.call(cmd, env=os.environ.copy())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mflib", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="list, describe or download datasets")
    d.add_argument("action", choices=["list", "info", "fetch"])
    d.add_argument("name", nargs="?")
    d.set_defaults(func=cmd_data)

    def split_args(sp):
        sp.add_argument("--dataset", default="ml-100k", choices=list(REGISTRY))
        sp.add_argument("--split", default="random",
                        help=f"{', '.join(SPLITS)} or a predefined split (u1..u5, ua, ub, course)")
        sp.add_argument("--test-size", type=float, default=0.2)
        sp.add_argument("--val-size", type=float, default=0.0)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("-k", type=int, default=10, help="cut-off of the ranking metrics")

    f = sub.add_parser("fit", help="fit a model on a split and print its test metrics")
    f.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(estimators()))}")
    f.add_argument("--param", action="append", type=_param, metavar="KEY=VALUE",
                   help="estimator parameter (repeatable), e.g. --param n_factors=20")
    f.add_argument("--save", help="write the fitted model to this file")
    split_args(f)
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser("evaluate", help="evaluate a saved model on a split's test part")
    e.add_argument("--model-file", required=True)
    split_args(e)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reports", help="execute the notebooks with papermill into reports/")
    r.add_argument("--profile", default="quick")
    r.add_argument("--notebooks", nargs="*", help="only notebooks starting with these prefixes")
    r.add_argument("--output-dir", default="reports")
    r.add_argument("--no-html", action="store_true")
    r.set_defaults(func=cmd_reports)

    b = sub.add_parser("bench", help="run benchmarks/bench_NAME.py (from the repository root)")
    b.add_argument("name")
    b.add_argument("extra", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return 2
