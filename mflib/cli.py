"""``python -m mflib {data,fit,evaluate,model,reports,bench}``.

Models are found by name in :mod:`mflib.registry`, so every exported estimator is
usable here without changes to this file. Every error is one line on stderr
(``error: ...``) and exit status 2; options are checked before any data is loaded
or any model is fitted.

Model files (``fit --save``, ``evaluate --model-file``, ``model info``) are read and
written by :mod:`mflib.persistence`: arrays and JSON, never pickle. ``evaluate`` scores a
model only on the split it was fitted on (recorded in the file), unless
``--allow-other-split`` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .callbacks import progress_enabled
from .data import REGISTRY, fetch, load_dataset, load_predefined_split, make_split
from .data.datasets import get_dataset, local_status
from .data.split import SPLITS
from .experiment import evaluate_fit, parse_value
from .persistence import describe, split_mismatch
from .registry import estimators, make_estimator
from .validation import DataError

DEFAULT_TEST_SIZE, DEFAULT_VAL_SIZE, DEFAULT_SEED = 0.2, 0.0, 0
DEFAULT_DATASET, DEFAULT_SPLIT = "ml-100k", "random"


class CLIError(Exception):
    """A mistake on the command line, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``error: ...``), not usage + message."""

    def error(self, message):
        raise CLIError(f"{message} (see {self.prog} --help)")


def _one_line(text) -> str:
    return re.sub(r"\s*\n\s*", " | ", str(text).strip())


# ---------------------------------------------------------------------- YAML 1.2 values
def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise argparse.ArgumentTypeError(f"--param {text!r} has no parameter name before '='")
    try:
        return key, parse_value(value)
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or _one_line(exc)
        raise argparse.ArgumentTypeError(
            f"cannot parse the value of parameter {key!r} ({value!r}) as YAML: {reason}"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


# ---------------------------------------------------------------------- helpers
def _split(args):
    ds = get_dataset(args.dataset)
    given = [opt for opt, value in (("--test-size", args.test_size),
                                     ("--val-size", args.val_size), ("--seed", args.seed))
             if value is not None]
    if args.split in ds.splits:
        if given:
            one = len(given) == 1
            raise CLIError(
                f"{' and '.join(given)} {'does' if one else 'do'} not apply to the predefined "
                f"split {args.split!r} of {args.dataset}, whose train and test files are "
                f"fixed; drop {'it' if one else 'them'}, or use a generated split "
                f"({', '.join(SPLITS)})"
            )
        return load_predefined_split(args.dataset, args.split)
    if args.split not in SPLITS:
        choices = ", ".join(list(SPLITS) + list(ds.splits))
        raise CLIError(f"unknown split {args.split!r} for {args.dataset}; choose from {choices}")
    if args.split == "temporal" and args.seed is not None:
        raise CLIError("--seed does not apply to the temporal split, which orders each "
                       "user's ratings by time; drop it")
    test_size = DEFAULT_TEST_SIZE if args.test_size is None else args.test_size
    val_size = DEFAULT_VAL_SIZE if args.val_size is None else args.val_size
    seed = DEFAULT_SEED if args.seed is None else args.seed
    if test_size == 0:
        raise CLIError("--test-size must be > 0: the test part would be empty")
    rm = load_dataset(args.dataset)
    kw = {"random_state": seed} if args.split != "temporal" else {}
    if args.split == "kfold":  # one fold of round(1 / test_size) folds
        n_splits = max(2, int(round(1 / test_size)))
        kw.update(n_splits=n_splits, fold=args.fold, val_size=val_size)
    else:
        kw.update(test_size=test_size, val_size=val_size)
    return make_split(rm, args.split, **kw)


def _check_save_path(text: str) -> Path:
    """Refuse, before fitting, a --save target that cannot be written as a file."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise CLIError(f"--save {text}: is a directory; give a file name inside it, "
                       f"e.g. {path / 'model'}")
    folder = path.parent
    if not folder.is_dir():
        raise CLIError(f"--save {text}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CLIError(f"--save {text}: cannot write there (permission denied)")
    return path


def _load_model(text: str):
    """The model saved in ``text``; any failure is one line naming the file."""
    from .persistence import load_model  # noqa: PLC0415

    path = Path(text).expanduser()
    if not path.exists():
        raise CLIError(f"--model-file {text}: no such file")
    if path.is_dir():
        raise CLIError(f"--model-file {text}: is a directory, not a model file")
    if path.stat().st_size == 0:
        raise CLIError(f"--model-file {text}: the file is empty (an interrupted save?); "
                       "fit and save the model again")
    try:
        return load_model(path)
    except Exception as exc:  # whatever the loader raises, the user gets the file and why
        reason = _one_line(exc).removeprefix(f"{path}: ")
        raise CLIError(f"--model-file {text}: cannot be loaded as an mflib model: "
                       f"{reason}") from exc


def _repo_dir(name: str) -> Path | None:
    """``name`` (params, notebooks, reports, benchmarks) in the repository holding this
    package, when mflib runs from a checkout; None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    return root / name if (root / name).is_dir() else None


def _show(obj) -> None:
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(obj)


# ---------------------------------------------------------------------- commands
def cmd_data(args) -> int:
    if args.action == "list":
        rows = []
        for name, ds in REGISTRY.items():
            try:
                path, status = local_status(name)
            except (DataError, OSError) as exc:  # one bad copy must not hide the others
                path, status = None, f"error: {_one_line(exc)}"
            rows.append((name, status, str(path) if path else "", ds.description))
        table = pd.DataFrame(rows, columns=["name", "status", "local copy", "description"])
        print(table.set_index("name").to_string(max_colwidth=90))
        return 0
    if not args.name:
        raise CLIError(f"`data {args.action}` needs a dataset name: {', '.join(REGISTRY)}")
    if args.action == "fetch":
        print(fetch(args.name))
        return 0
    ds = get_dataset(args.name)
    print(f"{ds.name}: {ds.description}\nurl: {ds.url}\ncitation: {ds.citation}")
    if ds.splits:
        print("predefined splits:", ", ".join(ds.splits))
    _show(load_dataset(args.name).summary().to_frame("value"))
    return 0


def _evaluate(model, split, k: int, *, ranking: bool = True) -> pd.DataFrame:
    row = evaluate_fit(model, test=split.test, ranking_k=k if ranking else None)
    keys = ["test_rmse", "test_mae", "fallback_fraction"]
    if ranking:
        keys += [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}"]
    return pd.Series({key: row[key] for key in keys}).to_frame(type(model).__name__)


def _split_options(data: dict) -> list[str]:
    """The command-line options that re-create the split of a provenance record."""
    split = data["split"]
    options = ["--dataset", str(data["dataset"])]
    kind = split["kind"]
    if kind == "predefined":
        return options + ["--split", split["name"]]
    options += ["--split", kind]
    if kind == "kfold":
        options += ["--test-size", f"{1 / split['n_splits']:.12g}", "--fold",
                    str(split["fold"])]
    else:
        options += ["--test-size", f"{split['test_size']:g}"]
    options += ["--val-size", f"{split['val_size']:g}"]
    if split.get("random_state") is not None:
        options += ["--seed", str(split["random_state"])]
    return options


def _model_split_args(args, model) -> None:
    """Fill the split options of ``evaluate`` from the model's provenance when none was
    given, otherwise with the usual defaults."""
    options = ("dataset", "split", "test_size", "val_size", "seed", "fold")
    if any(getattr(args, name) is not None for name in options):
        args.dataset = args.dataset or DEFAULT_DATASET
        args.split = args.split or DEFAULT_SPLIT
        args.fold = 0 if args.fold is None else args.fold
        return
    data = (getattr(model, "provenance_", None) or {}).get("data") or {}
    split = data.get("split")
    if not data.get("dataset") or not split or split.get("reproducible") is False:
        raise CLIError(f"--model-file {args.model_file}: the model records no registered "
                       "dataset and seeded split it was fitted on; give --dataset and --split "
                       "(with --allow-other-split, since they cannot be checked)")
    parsed = build_parser().parse_args(["evaluate", "--model-file", args.model_file,
                                        *_split_options(data)])
    for name in options:
        setattr(args, name, getattr(parsed, name))
    args.fold = 0 if args.fold is None else args.fold


def cmd_fit(args) -> int:
    save = _check_save_path(args.save) if args.save is not None else None
    params = {}
    for key, value in args.param or []:
        if key in params:
            raise CLIError(f"--param {key} is given twice ({params[key]!r} and {value!r})")
        params[key] = value
    model = make_estimator(args.model, **params)
    from .distributed.comm import world  # noqa: PLC0415

    comm = world()
    if comm is not None:  # started by mpiexec: the same fit, across the ranks
        return _fit_distributed(args, model, comm, save)
    if args.shard:
        raise CLIError("--shard reads one shard per MPI rank: start the command with "
                       "`mpiexec -n P python -m mflib fit ...`")
    split = _split(args)
    print(split)
    eval_set = split.validation if split.validation is not None else None
    model.fit(split.train, eval_set=eval_set)
    print(f"{type(model).__name__}: {model.n_iter_} iteration(s), stopped: {model.stop_reason_}")
    _show(_evaluate(model, split, args.k))
    if save is not None:
        print("saved to", model.save(save, include_seen=args.include_seen))
    return 0


def _fit_distributed(args, model, comm, save) -> int:
    """``fit`` under ``mpiexec``: every rank fits the same estimator under the communicator
    (each holding all the data, or with ``--shard`` only its shard of a predefined split);
    only rank 0 prints and writes; a failing rank ends every rank."""
    from .distributed.comm import Exchange, abort_on_error  # noqa: PLC0415
    from .distributed.shard import memory_per_rank, read_split_shard  # noqa: PLC0415
    from .execution import config_context  # noqa: PLC0415

    ex = Exchange(comm)
    root = ex.rank == 0
    with abort_on_error(comm):
        if args.shard:
            if args.split not in get_dataset(args.dataset).splits:
                raise CLIError(f"--shard reads the files of a predefined split; {args.dataset} "
                               f"has {', '.join(get_dataset(args.dataset).splits) or 'none'}")
            split = read_split_shard(args.dataset, args.split, exchange=ex)
        else:
            split = _split(args)
        if args.shard and model._mpi != "shards":
            raise CLIError(f"--shard: {type(model).__name__} cannot fit per-rank shards (ALS "
                           "can); drop --shard to give every rank all the data")
        how = {"shards": "", "whole": "", None: "; it has no MPI path, so every rank fits "
               "the whole model alone"}[model._mpi]
        if args.shard:
            sizes = ex.allreduce_sum(np.array([split.train.nnz, split.test.nnz], dtype=float))
            where = (f"{args.dataset}:{args.split}: train={int(sizes[0])}, "
                     f"test={int(sizes[1])} ratings, each of {ex.size} MPI ranks reading "
                     "only its shard")
        else:
            where = f"{split} on {ex.size} MPI ranks"
        if root:
            print(where + how)
        with config_context(comm=comm):
            model.fit(split.train, eval_set=None if args.shard else split.validation)
        scores = _evaluate_distributed(model, split, ex) if args.shard else \
            _evaluate(model, split, args.k)
        memory = memory_per_rank(ex)
        if root:
            print(f"{type(model).__name__}: {model.n_iter_} iteration(s), stopped: "
                  f"{model.stop_reason_}")
            _show(scores)
            print("peak memory per rank (MB): " + ", ".join(f"{m:.0f}" for m in memory))
            if save is not None:
                print("saved to", model.save(save, include_seen=False))
    return 0


def _evaluate_distributed(model, split, ex) -> pd.DataFrame:
    """RMSE and MAE of a test part spread over the ranks (sums all-reduced); ranking
    metrics need each user's whole test row and are not computed for shards."""
    pred, known = model.predict(split.test, return_known=True)
    err = pred - split.test.ratings
    sse, sae, n, n_known = ex.allreduce_sum(np.array([err @ err, np.abs(err).sum(), len(err),
                                                      known.sum()], dtype=float))
    return pd.Series({"test_rmse": np.sqrt(sse / n), "test_mae": sae / n,
                      "fallback_fraction": 1 - n_known / n}).to_frame(type(model).__name__)


def cmd_evaluate(args) -> int:
    model = _load_model(args.model_file)
    _model_split_args(args, model)
    split = _split(args)
    mismatch = split_mismatch(model, split.train)
    if mismatch is not None and not args.allow_other_split:
        data = (getattr(model, "provenance_", None) or {}).get("data") or {}
        own = ""
        if data.get("dataset") and data.get("split") and \
                data["split"].get("reproducible") is not False:
            own = f" ({' '.join(_split_options(data))}, or no split options at all)"
        raise CLIError(
            f"--model-file {args.model_file}: {mismatch}; the test ratings of another split "
            "may include the model's training ratings, which would make its scores look "
            f"better than they are. Evaluate it on its own split{own}, or pass "
            "--allow-other-split to score it anyway"
        )
    if mismatch is not None:
        print(f"warning: {mismatch}; scored anyway (--allow-other-split)", file=sys.stderr)
    ranking = True
    if getattr(model, "_seen", None) is None:
        if mismatch is None:  # the re-created train part is exactly the model's
            model.restore_seen_items(split.train)
        else:
            ranking = False
            print("note: no ranking metrics: the model file does not hold its training "
                  "ratings (save with --include-seen), so seen items cannot be excluded",
                  file=sys.stderr)
    print(split)
    _show(_evaluate(model, split, args.k, ranking=ranking))
    return 0


def cmd_model(args) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CLIError(f"{args.file}: no such file" if not path.exists()
                       else f"{args.file}: is a directory, not a model file")
    print(describe(path))
    return 0


def cmd_reports(args) -> int:
    from .experiment import run_reports  # noqa: PLC0415

    dirs = {}
    for name, given in (("params", args.params_dir), ("notebooks", args.notebooks_dir)):
        path = Path(given).expanduser() if given else _repo_dir(name)
        if path is None:
            raise CLIError(f"no {name}/ folder next to the mflib package "
                           f"({Path(__file__).resolve().parent.parent}); pass --{name}-dir")
        if not path.is_dir():
            raise CLIError(f"--{name}-dir {given}: not a folder")
        dirs[name] = path
    output = args.output_dir
    if output is None:
        output = (_repo_dir("notebooks").parent / "reports") if _repo_dir("notebooks") \
            else Path("reports")
    run_reports(args.profile, select=args.notebooks, html=not args.no_html,
                output_dir=output, params_dir=dirs["params"], notebooks_dir=dirs["notebooks"])
    return 0


def cmd_bench(args) -> int:
    bench_dir = _repo_dir("benchmarks")
    available = sorted(p.stem.removeprefix("bench_") for p in bench_dir.glob("bench_*.py")) \
        if bench_dir else []
    if args.name not in available:
        raise CLIError(f"unknown benchmark {args.name!r}; available: "
                       f"{', '.join(available) or 'none (benchmarks/ is in the repository)'}")
    cmd = [sys.executable, "-m", f"benchmarks.bench_{args.name}", *args.extra]
    return subprocess.call(cmd, env=os.environ.copy(), cwd=bench_dir.parent)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m mflib", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="list (with the state of each local copy), describe or "
                                    "download datasets")
    d.add_argument("action", choices=["list", "info", "fetch"])
    d.add_argument("name", nargs="?")
    d.set_defaults(func=cmd_data)

    def split_args(sp, from_model=False):
        # evaluate: None = not given, so the model's own split applies when none is
        own = " (default: the model's own, when no split option is given)" if from_model \
            else ""
        sp.add_argument("--dataset", default=None if from_model else DEFAULT_DATASET,
                        choices=list(REGISTRY), help=f"dataset{own}")
        sp.add_argument("--split", default=None if from_model else DEFAULT_SPLIT,
                        help=f"{', '.join(SPLITS)} or a predefined split (u1..u5, ua, ub, "
                             f"course){own}")
        # None = not given: the defaults apply to generated splits, and giving one with a
        # predefined split is an error
        sp.add_argument("--test-size", type=_fraction, default=None,
                        help=f"generated splits only (default {DEFAULT_TEST_SIZE})")
        sp.add_argument("--val-size", type=_fraction, default=None,
                        help=f"generated splits only (default {DEFAULT_VAL_SIZE})")
        sp.add_argument("--seed", type=int, default=None,
                        help=f"random generated splits only (default {DEFAULT_SEED})")
        sp.add_argument("--fold", type=int, default=None if from_model else 0,
                        help="with --split kfold: which of the round(1 / test-size) folds "
                             "tests (0-based)")
        sp.add_argument("-k", type=_positive_int, default=10,
                        help="cut-off of the ranking metrics (>= 1)")

    f = sub.add_parser("fit", help="fit a model on a split and print its test metrics")
    f.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(estimators()))}")
    f.add_argument("--param", action="append", type=_param, metavar="KEY=VALUE",
                   help="estimator parameter (repeatable), a YAML 1.2 value, e.g. "
                        "--param n_factors=20 --param learning_rate=1e-3")
    f.add_argument("--shard", action="store_true",
                   help="under mpiexec: each rank reads only its shard of a predefined split "
                        "(for data too big for one process; models with MPI support: ALS)")
    f.add_argument("--save", help="write the fitted model to this file (its folder must "
                                  "exist); arrays and JSON in one .npz, no pickle")
    f.add_argument("--include-seen", action="store_true",
                   help="with --save: also store the training ratings (so the model file "
                        "alone can exclude seen items when recommending)")
    split_args(f)
    f.set_defaults(func=cmd_fit)

    e = sub.add_parser("evaluate", help="evaluate a saved model on the test part of the split "
                                        "it was fitted on")
    e.add_argument("--model-file", required=True)
    e.add_argument("--allow-other-split", action="store_true",
                   help="score the model on a dataset or split other than the one it was "
                        "fitted on (its test part may hold the model's training ratings)")
    split_args(e, from_model=True)
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("model", help="describe a saved model file (class, parameters, "
                                     "arrays, the data and split it was fitted on)")
    m.add_argument("action", choices=["info"])
    m.add_argument("file")
    m.set_defaults(func=cmd_model)

    r = sub.add_parser("reports", help="execute the notebooks with papermill into reports/")
    r.add_argument("--profile", default="quick")
    r.add_argument("--notebooks", nargs="*", help="only notebooks starting with these prefixes")
    r.add_argument("--params-dir", help="profiles folder (default: params/ of the repository)")
    r.add_argument("--notebooks-dir", help="notebooks folder (default: notebooks/ of the "
                                           "repository)")
    r.add_argument("--output-dir", help="default: reports/ of the repository")
    r.add_argument("--no-html", action="store_true")
    r.set_defaults(func=cmd_reports)

    b = sub.add_parser("bench", help="run benchmarks/bench_NAME.py of the repository")
    b.add_argument("name")
    b.add_argument("extra", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    """Run one command; errors are one line on stderr and exit status 2."""
    try:
        args = build_parser().parse_args(argv)
        progress_enabled(False)  # a bad MFLIB_PROGRESS is reported before any work
        return args.func(args)
    except CLIError as exc:
        msg = str(exc)
    except KeyError as exc:  # str(KeyError) adds quotes around the message
        msg = exc.args[0] if exc.args else repr(exc)
    except (DataError, ValueError, TypeError, OSError, yaml.YAMLError, RuntimeError,
            ImportError) as exc:
        msg = str(exc) or type(exc).__name__
    print(f"error: {_one_line(msg)}", file=sys.stderr)
    return 2
