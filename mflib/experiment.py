"""The one experiment API: compare models, sweep parameters, run the reports.

:func:`compare` fits a dict of models on one split and :func:`sweep` fits one estimator
over a parameter grid; both report the same columns (:data:`COLUMNS`), so notebooks,
benchmarks and the command line read results by name.

Profiles live in ``params/<profile>/``: ``common.yaml`` (optional, shared by every
notebook) and ``<notebook>.yaml`` (keys of that notebook's ``parameters`` cell).
"""

from __future__ import annotations

import copy
import hashlib
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid


class YAML12Loader(yaml.SafeLoader):
    """``safe_load`` with the YAML 1.2 core schema's scalars.

    PyYAML implements YAML 1.1, where ``1e-3`` is a string (a float needs a dot),
    ``yes``/``on``/``no`` are booleans, ``010`` is octal 8 and ``1:30`` is 90. Here, as in
    YAML 1.2: ``1e-3`` is a float, only true/false are booleans, ``010`` is ten, ``0o10``
    is octal, and dates or ``1:30`` stay strings.
    """


YAML12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    ("null", r"~|null|Null|NULL|", "~nN"),
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)", "-+0123456789."),
]:
    YAML12Loader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"),
        list(_first) + ([""] if _tag == "null" else []),
    )


def _construct_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 16) if text.startswith("0x") else int(text, 10)


YAML12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_value(text: str):
    """A parameter value written in YAML 1.2 (``1e-3`` -> 0.001, ``[1, 2]`` -> list)."""
    return yaml.load(text, Loader=YAML12Loader)  # a SafeLoader: builds no objects


def _read_yaml(path: Path) -> dict:
    with path.open() as fh:
        data = yaml.load(fh, Loader=YAML12Loader) or {}  # a SafeLoader: builds no objects
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of parameter names to values")
    return data


def profiles(params_dir="params") -> list[str]:
    """Names of the parameter profiles (sub-folders of ``params_dir``)."""
    return sorted(p.name for p in Path(params_dir).iterdir() if p.is_dir())


def load_params(profile: str, notebook: str, params_dir="params") -> dict:
    """Parameters of ``notebook`` (e.g. ``"02_als_bcd"``) under ``profile``."""
    root = Path(params_dir)
    if not (root / profile).is_dir():
        known = ", ".join(profiles(root)) if root.is_dir() else "none"
        raise ValueError(f"unknown profile {profile!r}; profiles in {root}/: {known}")
    params = {}
    for name in ("common.yaml", f"{notebook}.yaml"):
        if (root / profile / name).is_file():
            params.update(_read_yaml(root / profile / name))
    return params


# ---------------------------------------------------------------------- compare and sweep
#: the columns every comparison and sweep reports, in this order (those that apply)
COLUMNS = (
    "train_rmse", "val_rmse", "best_val_rmse", "best_iteration", "test_rmse", "test_mae",
    "fallback_fraction", "objective", "n_iter", "stop_reason", "fit_seconds",
    "solver_seconds", "seconds_per_iteration",
)


def _parts(split, train, validation, test) -> tuple:
    """``(train, validation, test)`` from a Split and/or explicit parts."""
    if split is not None:
        if any(p is not None for p in (train, validation, test)):
            raise TypeError("pass either split=... or train=/validation=/test=, not both")
        train, validation, test = split.train, split.validation, split.test
    if train is None:
        raise TypeError("no training ratings: pass a Split or train=...")
    return train, validation, test


def evaluate_fit(model, *, validation=None, test=None, fit_seconds=None, history=(),
                 record=None, ranking_k=None, protocols=("full",), clip=False) -> dict:
    """The row :func:`compare` and :func:`sweep` report for one fitted model.

    Final ``train_rmse`` (as recorded), ``val_rmse`` and ``test_rmse`` / ``test_mae`` /
    ``fallback_fraction`` (computed from the model's predictions, clipped to the training
    scale when ``clip``), ``best_val_rmse`` and ``best_iteration`` (from the history, when
    it records ``val_rmse``), the final ``objective`` and any other ``history`` key,
    ``n_iter``, ``stop_reason``, ``fit_seconds`` (wall clock of ``fit``), ``solver_seconds``
    (the history's ``time``: the solver alone) and ``seconds_per_iteration``; with
    ``ranking_k``, P/R/NDCG/MAP@k on ``test`` in each of ``protocols``; ``record`` maps
    extra column names to functions of the model.
    """
    from .metrics import mae, ranking_metrics, rmse  # noqa: PLC0415

    h = model.history_
    row = {}
    if "train_rmse" in h:
        row["train_rmse"] = float(h["train_rmse"][-1])
    if validation is not None:
        row["val_rmse"] = rmse(validation.ratings, model.predict(validation, clip=clip))
        if "val_rmse" in h:
            curve = h["val_rmse"]
            finite = np.isfinite(curve)
            best = int(np.nanargmin(np.where(finite, curve, np.nan))) if finite.any() else 0
            row["best_val_rmse"] = float(curve[best]) if finite.any() else np.nan
            row["best_iteration"] = best + 1
    if test is not None:
        pred, known = model.predict(test, clip=clip, return_known=True)
        row.update(test_rmse=rmse(test.ratings, pred), test_mae=mae(test.ratings, pred),
                   fallback_fraction=float(1 - known.mean()))
        if ranking_k is not None:
            for protocol in protocols:
                row.update(ranking_metrics(model, test, k=ranking_k, protocol=protocol)
                           .drop("users").to_dict())
    for key in ("objective", *history):
        if key in h:
            row[key] = h[len(h) - 1].get(key, np.nan) if len(h) else np.nan
    solver = float(h["time"][-1]) if len(h) else 0.0
    row.update(n_iter=model.n_iter_, stop_reason=model.stop_reason_, fit_seconds=fit_seconds,
               solver_seconds=solver,
               seconds_per_iteration=solver / model.n_iter_ if model.n_iter_ else np.nan)
    for name, fn in (record or {}).items():
        row[name] = fn(model)
    return row


def _ordered(rows: list[dict], first=()) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    known = [c for c in (*first, *COLUMNS) if c in table.columns]
    return table[known + [c for c in table.columns if c not in known]]


def compare(models: dict, split=None, *, train=None, validation=None, test=None,
            fit_eval_set=True, history=(), record=None, ranking_k=None, protocols=("full",),
            clip=False, sort_by=None) -> pd.DataFrame:
    """Fit each model of ``models`` on the training part and score it: the one way mflib
    compares models (notebooks, benchmarks and the command line use it).

    Parameters
    ----------
    models : dict of name -> estimator
        Fitted in place (they stay fitted in the dict, for plots).
    split : Split, optional
        Its train / validation / test parts; or give them as ``train=``, ``validation=``,
        ``test=``.
    fit_eval_set : bool, default True
        Pass the validation part as ``eval_set`` so histories record ``val_rmse``.
    history, record, ranking_k, protocols, clip :
        Extra columns; see :func:`evaluate_fit`.
    sort_by : str, optional
        Sort the rows by this column (ascending).

    Returns
    -------
    DataFrame indexed by model name, columns as in :data:`COLUMNS` (those that apply),
    then the extra ones.
    """
    train, validation, test = _parts(split, train, validation, test)
    rows = []
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(train, eval_set=validation if fit_eval_set else None)
        rows.append({"model": name, **evaluate_fit(
            model, validation=validation, test=test, fit_seconds=time.perf_counter() - t0,
            history=history, record=record, ranking_k=ranking_k, protocols=protocols,
            clip=clip)})
    table = _ordered(rows, ("model",)).set_index("model")
    return table.sort_values(sort_by) if sort_by else table


def sweep(estimator, param_grid, split=None, *, train=None, validation=None, test=None,
          warm_start=False, fit_eval_set=True, history=(), record=None, ranking_k=None,
          protocols=("full",), clip=False, return_models=False):
    """Fit ``estimator`` at every point of ``param_grid`` and tabulate the fits.

    Parameters
    ----------
    estimator : FactorizationEstimator
        Template; its other parameters are kept. Cloned per point, unless
        ``warm_start``.
    param_grid : dict or list of dicts
        As :class:`sklearn.model_selection.ParameterGrid` takes it, e.g.
        ``{"n_factors": [10, 50], "regularization": [0.05, 0.1]}``; points are fitted in
        the grid's order.
    split, train, validation, test :
        As in :func:`compare`. Choose settings on ``validation``; ``test`` is only
        reported.
    warm_start : bool, default False
        Refit one model through the grid, each fit starting from the previous one (the
        estimator must have a ``warm_start`` parameter; e.g. a decreasing lambda path).
    history, record, ranking_k, protocols, clip :
        Extra columns; see :func:`evaluate_fit`.
    return_models : bool, default False
        Also return the fitted models, one per row (copies, with ``warm_start``).

    Returns
    -------
    DataFrame with one row per grid point: the parameters, then the columns of
    :data:`COLUMNS` that apply; with ``return_models``, ``(table, models)``.
    """
    grid = list(ParameterGrid(param_grid))
    if not grid or grid == [{}]:
        raise ValueError("param_grid is empty; give at least one parameter value, e.g. "
                         "{'regularization': [0.1]}")
    train, validation, test = _parts(split, train, validation, test)
    if warm_start:
        if "warm_start" not in estimator.get_params():
            raise TypeError(f"{type(estimator).__name__} has no warm_start parameter; "
                            "use warm_start=False")
        model = clone(estimator).set_params(warm_start=True)
    rows, models = [], []
    for params in grid:
        if not warm_start:
            model = clone(estimator)
        model.set_params(**params)
        t0 = time.perf_counter()
        model.fit(train, eval_set=validation if fit_eval_set else None)
        rows.append({**params, **evaluate_fit(
            model, validation=validation, test=test, fit_seconds=time.perf_counter() - t0,
            history=history, record=record, ranking_k=ranking_k, protocols=protocols,
            clip=clip)})
        if return_models:
            models.append(copy.deepcopy(model) if warm_start else model)
    table = _ordered(rows, tuple(grid[0]))
    return (table, models) if return_models else table


def best_row(table: pd.DataFrame, metric: str = "val_rmse") -> pd.Series:
    """The row of ``table`` with the lowest ``metric`` (ties: the first)."""
    if metric not in table.columns:
        raise KeyError(f"{metric!r} is not a column of the table; columns: {list(table.columns)}")
    return table.loc[table[metric].idxmin()]


def best_fit(table: pd.DataFrame, models: list, metric: str = "val_rmse"):
    """``(row, model)`` of the lowest ``metric`` in a :func:`sweep` with ``return_models``."""
    row = best_row(table, metric)
    return row, models[table.index.get_loc(row.name)]


def clone_models(models: dict) -> dict:
    """Unfitted copies of a dict of estimators (same names, same parameters)."""
    return {name: clone(model) for name, model in models.items()}


def predictions(models: dict, X) -> pd.DataFrame:
    """Each fitted model's predictions for the pairs of ``X`` (a RatingMatrix or raw
    (n, 2) ids): one column per model, one row per pair."""
    return pd.DataFrame({name: model.predict(X) for name, model in models.items()})


def prediction_of(X):
    """A ``record`` function: a fitted model's prediction for the single pair ``X``."""
    def predict(model):
        return float(model.predict(X)[0])
    return predict


def attribute(name: str):
    """A ``record`` function: a fitted attribute of the model (NaN when it has none)."""
    def read(model):
        return getattr(model, name, np.nan)
    read.__name__ = f"read_{name}"
    return read


def factors_digest(model) -> str:
    """A short hash of a fitted model's factor and bias arrays: equal digests mean
    bit-identical models (e.g. fits with different ``n_jobs``)."""
    h = hashlib.sha256()
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        value = getattr(model, name, None)
        if value is not None:
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:12]


def history_value(key: str):
    """A ``record`` function: the last recorded value of history column ``key``."""
    def last(model):
        h = model.history_
        return h[len(h) - 1].get(key, np.nan) if len(h) else np.nan
    last.__name__ = f"last_{key}"
    return last


def notebook_paths(notebooks_dir="notebooks", select=None) -> list[Path]:
    """Numbered notebooks (``NN_name.ipynb``) in order, optionally only those whose name
    starts with one of ``select`` (e.g. ``["00", "01"]``)."""
    paths = sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))
    if select:
        paths = [p for p in paths if any(p.stem.startswith(s) for s in select)]
        if not paths:
            raise ValueError(f"no notebook in {notebooks_dir}/ matches {select}")
    return paths


def run_reports(profile="quick", *, notebooks_dir="notebooks", params_dir="params",
                output_dir="reports", select=None, html=True, log=print) -> list[Path]:
    """Execute every notebook with papermill under ``profile`` into ``output_dir/profile``.

    Parameters a profile names that a notebook's ``parameters`` cell lacks are an error
    (a typo would otherwise be ignored). Each executed notebook is also written as HTML.
    Raises RuntimeError listing the notebooks that failed, after running all of them.
    """
    import papermill as pm  # noqa: PLC0415  (optional dependency: the notebooks extra)

    if profile not in profiles(params_dir):
        raise ValueError(f"unknown profile {profile!r}; profiles in {params_dir}/: "
                         f"{', '.join(profiles(params_dir))}")
    out_dir = Path(output_dir) / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    written, failed = [], []
    for nb in notebook_paths(notebooks_dir, select):
        params = load_params(profile, nb.stem, params_dir)
        declared = pm.inspect_notebook(str(nb))
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValueError(
                f"profile {profile!r} sets {unknown} for {nb.name}, whose parameters cell "
                f"declares only {sorted(declared)}"
            )
        target = out_dir / nb.name
        log(f"[{profile}] {nb.name} ({len(params)} parameters) -> {target}")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, progress_bar=False,
                                cwd=str(nb.parent), kernel_name="python3")
        except pm.PapermillExecutionError as exc:
            failed.append(f"{nb.name}: {exc.ename}: {exc.evalue}")
            log(f"  FAILED after {time.perf_counter() - t0:.1f} s: {exc.ename}: {exc.evalue}")
            continue
        log(f"  done in {time.perf_counter() - t0:.1f} s")
        written.append(target)
        if html:
            written.append(_to_html(target))
    if failed:
        raise RuntimeError("notebooks failed:\n  " + "\n  ".join(failed))
    return written


def _to_html(path: Path) -> Path:
    import nbformat  # noqa: PLC0415
    from nbconvert import HTMLExporter  # noqa: PLC0415

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(path, as_version=4))
    out = path.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


#: the first code cell of every notebook: in Colab (detected by its module, never
#: assumed) it installs mflib with its notebook extras from ``MFLIB_SOURCE``; anywhere
#: else it does nothing. The data are downloaded and checksummed by mflib when loaded.
COLAB_CELL = """\
# Colab only (detected, not assumed): install mflib from MFLIB_SOURCE (see the README);
# elsewhere this cell does nothing. mflib downloads and checks the data when loading it.
import os
import subprocess
import sys

if "google.colab" in sys.modules and "MFLIB_SOURCE" not in os.environ:
    raise RuntimeError("In Colab, first run %env MFLIB_SOURCE=git+https://github.com/<you>/"
                       "<your copy of mflib> (a pip requirement for mflib), then this cell")
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    f"mflib[notebooks] @ {os.environ['MFLIB_SOURCE']}"], check=True)"""

#: the marker of a notebook cell whose output nbval compares (``make test``)
CHECKED_MARKER = "# NBVAL_CHECK_OUTPUT"


def store_checked_outputs(notebook, *, timeout=600) -> int:
    """Execute ``notebook`` (an ``.ipynb``, as nbval runs it: its own parameters) and store
    the text output of its ``# NBVAL_CHECK_OUTPUT`` cells in the file; every other cell
    stays without outputs. Returns the number of cells stored.

    Run it (``make checked-outputs``) after a change that is meant to change a notebook's
    summary; ``make test`` then fails whenever the summary changes unintentionally.
    """
    import nbformat  # noqa: PLC0415  (the notebooks extra)
    from nbclient import NotebookClient  # noqa: PLC0415

    path = Path(notebook)
    committed = nbformat.read(path, as_version=4)
    executed = nbformat.read(path, as_version=4)
    NotebookClient(executed, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    stored = 0
    for mine, ran in zip(committed.cells, executed.cells, strict=True):
        if mine.cell_type != "code":
            continue
        mine.execution_count = None
        mine.outputs = []
        if mine.source.lstrip().startswith(CHECKED_MARKER):
            mine.outputs = [o for o in ran.outputs
                            if o.output_type == "stream" and o.name == "stdout"]
            mine.execution_count = 1  # nbval compares only cells that ran
            stored += 1
    nbformat.write(committed, path)
    return stored


# ---------------------------------------------------------------------- hyperparameter search
SEARCH_METHODS = ("random", "grid", "optuna")


class SearchResult:
    """What :func:`search` found: one ``table`` row per trial (the parameters, then the
    columns of :data:`COLUMNS`), the ``best_params`` and the ``best_model`` (fitted on the
    training part) by the lowest ``metric`` on validation, and that trial's row."""

    def __init__(self, table: pd.DataFrame, best_params: dict, best_model, best_row: pd.Series,
                 metric: str):
        self.table = table
        self.best_params = best_params
        self.best_model = best_model
        self.best_row = best_row
        self.metric = metric

    def __repr__(self) -> str:
        return (f"SearchResult({len(self.table)} trials, best {self.metric}="
                f"{self.best_row[self.metric]:.4f} at {self.best_params})")


def _optuna_suggest(trial, name, spec):
    """One Optuna suggestion for ``spec``: a list (categorical) or a frozen scipy.stats
    ``uniform``, ``loguniform`` (``reciprocal``) or ``randint`` distribution."""
    if isinstance(spec, (list, tuple)):
        choices = list(spec)
        plain = all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)
        if plain:
            return trial.suggest_categorical(name, choices)
        return choices[trial.suggest_categorical(name, list(range(len(choices))))]
    dist = getattr(spec, "dist", None)
    kind = getattr(dist, "name", None)
    if kind == "uniform":
        low, high = spec.support()
        return trial.suggest_float(name, float(low), float(high))
    if kind in ("loguniform", "reciprocal"):
        low, high = spec.support()
        return trial.suggest_float(name, float(low), float(high), log=True)
    if kind == "randint":
        low, high = spec.support()
        return trial.suggest_int(name, int(low), int(high))
    raise TypeError(
        f"search(method='optuna') takes lists and scipy.stats uniform, loguniform and "
        f"randint distributions; {name!r} is {spec!r}")


def search(estimator, param_distributions, split=None, *, train=None, validation=None,
           test=None, method="random", n_iter=20, metric="val_rmse", random_state=0,
           fit_eval_set=True, history=(), record=None, ranking_k=None, protocols=("full",),
           clip=False, log=print) -> SearchResult:
    """Tune ``estimator`` on the validation part: the one hyperparameter search of mflib.

    Every trial fits a clone of ``estimator`` with the trial's parameters on the training
    part and scores it on validation; the trial with the lowest ``metric`` wins. The test
    part, when given, is only reported (never used to choose). Searches are seeded: the
    same ``random_state`` gives the same trials. The chosen settings are printed.

    Parameters
    ----------
    estimator : FactorizationEstimator
        Template; parameters not searched keep its values.
    param_distributions : dict
        Parameter name -> a list of values or a frozen ``scipy.stats`` distribution
        (``loguniform(1e-3, 1)``, ``randint(5, 50)``, ``uniform(0, 1)``); for ``"grid"``,
        lists only (a :class:`~sklearn.model_selection.ParameterGrid`).
    split, train, validation, test :
        As in :func:`compare`; a validation part is required.
    method : {"random", "grid", "optuna"}, default "random"
        scikit-learn's seeded :class:`~sklearn.model_selection.ParameterSampler`, the full
        grid, or Optuna's TPE sampler seeded with ``random_state`` (the optional
        ``mflib[search]`` extra), as the original study tuned.
    n_iter : int, default 20
        Trials of "random" and "optuna".
    metric : str, default "val_rmse"
        A column of the trial rows to minimise (e.g. ``"val_rmse"``).
    random_state : int, default 0
    fit_eval_set, history, record, ranking_k, protocols, clip :
        As in :func:`compare`.
    log : callable or None, default print
        Receives the one-line report of the chosen settings.

    Returns
    -------
    SearchResult
    """
    from sklearn.model_selection import ParameterSampler  # noqa: PLC0415

    from .validation import check_choice, check_positive_int  # noqa: PLC0415

    check_choice(method, "method", SEARCH_METHODS)
    check_positive_int(n_iter, "n_iter")
    train, validation, test = _parts(split, train, validation, test)
    if validation is None:
        raise ValueError("search needs a validation part to choose on: pass a Split with "
                         "val_size > 0, or validation=...")
    if not isinstance(param_distributions, dict) or not param_distributions:
        raise ValueError("param_distributions must be a non-empty dict of parameter name -> "
                         f"values or distribution, got {param_distributions!r}")
    unknown = sorted(set(param_distributions) - set(estimator.get_params()))
    if unknown:
        raise ValueError(f"{type(estimator).__name__} has no parameter(s) {unknown}; its "
                         f"parameters: {sorted(estimator.get_params())}")
    rows, models = [], []

    def trial_fit(params) -> float:
        # plain Python values (samplers draw NumPy scalars), so tables and reports read well
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
        model = clone(estimator).set_params(**params)
        t0 = time.perf_counter()
        model.fit(train, eval_set=validation if fit_eval_set else None)
        row = {**params, **evaluate_fit(
            model, validation=validation, test=test, fit_seconds=time.perf_counter() - t0,
            history=history, record=record, ranking_k=ranking_k, protocols=protocols,
            clip=clip)}
        if metric not in row:
            raise KeyError(f"metric {metric!r} is not a column of the trial rows; columns: "
                           f"{list(row)}")
        rows.append(row)
        models.append(model)
        return float(row[metric])

    if method == "optuna":
        try:
            import optuna  # noqa: PLC0415  (the optional mflib[search] extra)
        except ImportError as exc:
            raise ImportError("search(method='optuna') needs Optuna: pip install "
                              "'mflib[search]' (or use method='random')") from exc
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=random_state))
        study.optimize(lambda trial: trial_fit({
            name: _optuna_suggest(trial, name, spec)
            for name, spec in param_distributions.items()}), n_trials=n_iter)
    else:
        trials = (ParameterGrid(param_distributions) if method == "grid" else
                  ParameterSampler(param_distributions, n_iter, random_state=random_state))
        for params in trials:
            trial_fit(params)
    table = _ordered(rows, tuple(param_distributions))
    table.index.name = "trial"
    best = int(np.nanargmin(table[metric].to_numpy(dtype=float)))
    best_params = {name: rows[best][name] for name in param_distributions}
    result = SearchResult(table, best_params, models[best], table.iloc[best], metric)
    if log is not None:
        log(f"search ({method}, {len(rows)} trials, seed {random_state}): "
            f"{type(estimator).__name__} {best_params} -> {metric} {table[metric].iloc[best]:.4f}")
    return result


# ---------------------------------------------------------------------- evaluation on folds
def validation_part(train, *, val_size=0.1, kind="random", random_state=0) -> tuple:
    """``(fit_part, validation)``: ``val_size`` of the training ratings held out to choose
    settings on (:func:`mflib.data.make_split` of ``train`` alone, so a split's test part
    can never enter). ``kind`` is a split kind; "temporal" takes no seed.

    The same call with the same arguments gives the same parts, and it draws exactly the
    holdout a :class:`~mflib.Blend` with ``holdout=val_size``, ``holdout_split=kind`` and
    ``random_state`` carves from the same ratings.
    """
    from .data.split import make_split  # noqa: PLC0415

    extra = {} if kind == "temporal" else {"random_state": random_state}
    inner = make_split(train, kind, test_size=val_size, val_size=0.0, **extra)
    return inner.train, inner.test


class ReusedFits:
    """An estimator that reuses models already fitted on the very same ratings.

    ``fit(X)`` looks ``X`` up by its fingerprint (ratings, pairs and id maps:
    :func:`mflib.persistence.ratings_fingerprint`) among the models it was given or fitted
    before: when one was fitted on exactly these ratings it *becomes* that model, and
    otherwise it fits a clone of ``estimator`` (and remembers it). Everything else
    (``predict``, ``score_items``, ``history_``, ``save``...) is the current model's.
    Clones share the cache, which is what lets a :class:`~mflib.Blend` whose holdout is
    the tuning's validation part reuse the tuning fits and the full-training fits
    instead of repeating them (:func:`evaluate_families`).
    """

    def __init__(self, estimator, fitted=()):
        self.estimator = estimator
        self._cache = {}
        for model in fitted:
            self.remember(model)

    def remember(self, model) -> None:
        """Add a fitted model, keyed by the fingerprint of its training ratings."""
        self._cache[model.provenance_["training_sha256"]] = model

    def __sklearn_clone__(self):
        out = ReusedFits(self.estimator)
        out._cache = self._cache
        return out

    def get_params(self, deep=True) -> dict:
        return {"estimator": self.estimator}

    def fit(self, X, y=None, *, eval_set=None):
        from .data.ratings import as_rating_matrix  # noqa: PLC0415
        from .persistence import ratings_fingerprint  # noqa: PLC0415

        train = as_rating_matrix(X, y)
        key = ratings_fingerprint(train)
        if key not in self._cache:
            self._cache[key] = clone(self.estimator).fit(train, eval_set=eval_set)
        self.model_ = self._cache[key]
        return self

    def predict(self, X, **kwargs):
        return self.model_.predict(X, **kwargs)

    def __getattr__(self, name):
        if name.startswith("__") or name in ("model_", "_cache", "estimator"):
            raise AttributeError(name)
        return getattr(self.model_, name)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def tune_families(families: dict, train, *, val_size=0.1, kind="random", method="grid",
                  n_iter=10, random_state=0, log=print) -> dict:
    """Choose each family's settings on a validation part of ``train`` only.

    Parameters
    ----------
    families : dict of name -> (estimator, space)
        ``space`` as :func:`search` takes it (a dict of parameter -> values or
        distribution); an empty dict keeps the estimator's settings (it is fitted once on
        the fit part, for its history).
    train : RatingMatrix
        Training ratings only; the validation part is carved from them
        (:func:`validation_part`).
    val_size, kind, random_state :
        Of the validation part; ``random_state`` also seeds random searches.
    method, n_iter :
        As in :func:`search` ("grid" fits every point of each space).
    log : callable or None

    Returns
    -------
    dict of name -> SearchResult
        ``best_params``, ``best_model`` (fitted on the fit part with the validation part
        as ``eval_set``, so its history holds ``val_rmse`` per iteration) and the trial
        ``table``.
    """
    fit_part, validation = validation_part(train, val_size=val_size, kind=kind,
                                           random_state=random_state)
    out = {}
    for name, (estimator, space) in families.items():
        if space:
            result = search(estimator, space, train=fit_part, validation=validation,
                            method=method, n_iter=n_iter, random_state=random_state, log=None)
        else:
            model = clone(estimator)
            t0 = time.perf_counter()
            model.fit(fit_part, eval_set=validation)
            row = evaluate_fit(model, validation=validation,
                               fit_seconds=time.perf_counter() - t0)
            table = _ordered([row])
            table.index.name = "trial"
            result = SearchResult(table, {}, model, table.iloc[0], "val_rmse")
        out[name] = result
        if log is not None:
            chosen = ", ".join(f"{k}={_plain(v)!r}" for k, v in result.best_params.items())
            log(f"  {name}: {chosen or 'as configured'} -> val_rmse "
                f"{result.best_row['val_rmse']:.4f} ({len(result.table)} fits)")
    return out


class FamilyEvaluation:
    """What :func:`evaluate_families` measured.

    ``table``: one row per (split, model): the columns of :data:`COLUMNS` that apply
    (``test_rmse``, ``test_mae``, ``fit_seconds``, ``n_iter``...), the ranking metrics
    (``precision@k``...), ``val_rmse`` (on the validation part the settings were chosen
    on) and ``params`` (the chosen settings, as text). ``models[split][name]``: the
    models fitted on the split's whole training part (the blend included);
    ``tuning[split][name]``: the :class:`SearchResult` of each family;
    ``blends[split]``: the fitted :class:`~mflib.Blend`.
    """

    def __init__(self, table, models, tuning, blends):
        self.table = table
        self.models = models
        self.tuning = tuning
        self.blends = blends

    def weights(self) -> pd.DataFrame:
        """The blend's weights: one column per split, one row per member (and the
        intercept)."""
        return pd.DataFrame({
            split: pd.concat([blend.named_weights_,
                              pd.Series({"intercept": blend.intercept_})])
            for split, blend in self.blends.items()})

    def __repr__(self) -> str:
        return (f"FamilyEvaluation({len(self.models)} splits x "
                f"{self.table['model'].nunique()} models)")


def evaluate_families(families: dict, splits: dict, *, val_size=0.1, kind="random",
                      method="grid", n_iter=10, ranking_k=10, blend=True,
                      blend_method="nnls", random_state=0, log=print) -> FamilyEvaluation:
    """Every family on every split, each tuned on its split's training part only, and a
    :class:`~mflib.Blend` of them all.

    For each split: the families' settings are chosen on a validation part of the
    training ratings (:func:`tune_families`); each tuned family is fitted on the whole
    training part (timed) and scored on the test part (RMSE, MAE, full-catalogue
    P/R/NDCG/MAP@``ranking_k``); then a blend of the tuned families fits its weights on
    the same validation part (members fitted without it) and predicts the test part with
    the members fitted on the whole training part, exactly as ``Blend(holdout=val_size,
    holdout_split=kind, refit=True)`` does. The blend reuses the tuning's and the
    families' fits (:class:`ReusedFits`) instead of repeating them; its ``fit_seconds``
    is what it would cost from scratch (its members' two fits each, plus the weights).
    The test part is only ever predicted.

    Parameters
    ----------
    families : dict of name -> (estimator, space)
        See :func:`tune_families`.
    splits : dict of name -> Split
        E.g. ml-100k's ``u1``...``u5`` and the Netflix course split.
    val_size, kind, method, n_iter, random_state :
        See :func:`tune_families`.
    ranking_k : int or None, default 10
        Cut-off of the ranking metrics (None: no ranking metrics).
    blend : bool, default True
    blend_method : {"nnls", "ridge"}, default "nnls"
    log : callable or None, default print
        Progress, one line per family and split.

    Returns
    -------
    FamilyEvaluation
    """
    from .solvers.blend import Blend  # noqa: PLC0415  (the solvers import this module)

    rows, models, tuning, blends = [], {}, {}, {}
    for split_name, split in splits.items():
        if log is not None:
            log(f"[{split_name}] tuning {len(families)} families on "
                f"{val_size:g} of its {split.train.nnz} training ratings")
        tuned = tune_families(families, split.train, val_size=val_size, kind=kind,
                              method=method, n_iter=n_iter, random_state=random_state,
                              log=log)
        fitted, members = {}, []
        for name, (estimator, _) in families.items():
            model = clone(estimator).set_params(**tuned[name].best_params)
            t0 = time.perf_counter()
            model.fit(split.train)
            seconds = time.perf_counter() - t0
            fitted[name] = model
            rows.append(_family_row(split_name, name, model, split, seconds, tuned[name],
                                    ranking_k))
            members.append((name, ReusedFits(clone(model),
                                             (tuned[name].best_model, model))))
        if blend:
            combined = Blend(members, method=blend_method, holdout=val_size,
                             holdout_split=kind, refit=True, random_state=random_state)
            t0 = time.perf_counter()
            combined.fit(split.train)
            # what the blend costs fitted from scratch: its own work plus every member's
            # fit without the holdout (the tuning's chosen trial) and on all training
            seconds = time.perf_counter() - t0 + sum(
                float(tuned[name].best_row["fit_seconds"]) for name in families) + sum(
                r["fit_seconds"] for r in rows if r["split"] == split_name)
            fitted["blend"] = blends[split_name] = combined
            row = _family_row(split_name, "blend", combined, split, seconds, None, ranking_k)
            row["params"] = ", ".join(f"{n}={w:.3f}" for n, w in
                                      combined.named_weights_.items())
            rows.append(row)
        models[split_name], tuning[split_name] = fitted, tuned
        if log is not None:
            done = pd.DataFrame([r for r in rows if r["split"] == split_name])
            best = done.loc[done["test_rmse"].idxmin()]
            log(f"[{split_name}] best test RMSE {best['test_rmse']:.4f} ({best['model']})")
    table = pd.DataFrame(rows)
    first = ["split", "model", "test_rmse", "test_mae"]
    rank_cols = [c for c in table.columns if "@" in c]
    rest = [c for c in ("val_rmse", "fit_seconds", "n_iter", "stop_reason", "params")
            if c in table.columns]
    return FamilyEvaluation(table[first + rank_cols + rest], models, tuning, blends)


def _family_row(split_name, name, model, split, seconds, tuned, ranking_k) -> dict:
    row = evaluate_fit(model, test=split.test, fit_seconds=seconds, ranking_k=ranking_k)
    out = {"split": split_name, "model": name, **row}
    if tuned is not None:
        out["val_rmse"] = float(tuned.best_row["val_rmse"])
        out["params"] = ", ".join(f"{k}={_plain(v)!r}" for k, v in tuned.best_params.items())
    return out


def select_splits(table: pd.DataFrame, splits=None, dataset=None) -> pd.DataFrame:
    """Rows of a :class:`FamilyEvaluation` table for ``splits`` (names) and/or
    ``dataset`` (the splits named ``dataset/...``, as :func:`load_splits` names them)."""
    keep = np.ones(len(table), dtype=bool)
    if splits is not None:
        keep &= table["split"].isin(list(splits)).to_numpy()
    if dataset is not None:
        keep &= table["split"].str.startswith(f"{dataset}/").to_numpy()
    return table[keep]


def fold_summary(table: pd.DataFrame, metrics=("test_rmse", "test_mae"), *, splits=None,
                 dataset=None, sort_by=None) -> pd.DataFrame:
    """Mean and standard deviation (ddof=1) of ``metrics`` per model over ``splits``
    (names) or the splits of ``dataset`` (named ``dataset/...``, as :func:`load_splits`
    names them; default: every split in ``table``), one row per model, columns
    ``<metric>_mean`` / ``<metric>_std`` and ``n_splits``, sorted by the first metric's
    mean."""
    part = select_splits(table, splits, dataset)
    if part.empty:
        raise ValueError(f"no rows for splits {splits!r}; the table has "
                         f"{sorted(table['split'].unique())}")
    grouped = part.groupby("model")[list(metrics)]
    out = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    out["n_splits"] = part.groupby("model").size()
    ordered = [f"{m}_{s}" for m in metrics for s in ("mean", "std")] + ["n_splits"]
    return out[ordered].sort_values(sort_by or f"{metrics[0]}_mean")


def paired_comparison(table: pd.DataFrame, metric="test_rmse", *, models=None, top=3,
                      splits=None, dataset=None) -> pd.DataFrame:
    """Paired comparison of models across splits (the same folds for every model).

    For each pair (a, b) of ``models`` (default: the ``top`` lowest mean ``metric``), the
    per-split differences ``d = metric(a) - metric(b)``: their mean and standard
    deviation, how many splits ``a`` wins (lower ``metric``), the paired t-test
    (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (exact; with 5 folds
    its two-sided p-value cannot go below 2/2^5 = 0.0625). ``splits`` / ``dataset`` select
    the splits as in :func:`fold_summary`.
    """
    from itertools import combinations  # noqa: PLC0415

    from scipy import stats  # noqa: PLC0415

    part = select_splits(table, splits, dataset)
    wide = part.pivot(index="split", columns="model", values=metric)
    if models is None:
        models = list(wide.mean().sort_values().index[:top])
    missing = sorted(set(models) - set(wide.columns))
    if missing:
        raise KeyError(f"models {missing} are not in the table; it has {list(wide.columns)}")
    wide = wide[list(models)].dropna()
    if len(wide) < 2:
        raise ValueError(f"a paired comparison needs at least 2 splits scored by every model; "
                         f"got {len(wide)}")
    rows = []
    for a, b in combinations(models, 2):
        d = (wide[a] - wide[b]).to_numpy()
        t = stats.ttest_rel(wide[a], wide[b])
        w = stats.wilcoxon(d) if np.any(d != 0) else None
        rows.append({"model_a": a, "model_b": b, "mean_difference": float(d.mean()),
                     "std_difference": float(d.std(ddof=1)), "a_wins": int((d < 0).sum()),
                     "splits": len(d), "t_statistic": float(t.statistic),
                     "t_pvalue": float(t.pvalue),
                     "wilcoxon_pvalue": float(w.pvalue) if w is not None else 1.0})
    return pd.DataFrame(rows)


def history_table(models: dict, keys=("time", "val_rmse")) -> pd.DataFrame:
    """The histories of fitted ``models`` (name -> model or History) as one long table:
    columns ``model``, ``iteration`` and ``keys`` (models that do not record every key
    are left out), for seaborn's ``lineplot(x="time", y="val_rmse", hue="model")``."""
    frames = []
    for name, model in models.items():
        h = model.history_ if hasattr(model, "history_") else model
        if len(h) and all(k in h for k in keys):
            frames.append(pd.DataFrame({"model": name, "iteration": np.arange(1, len(h) + 1),
                                        **{k: h[k] for k in keys}}))
    if not frames:
        raise ValueError(f"no model records all of {list(keys)}")
    return pd.concat(frames, ignore_index=True)


#: exported estimators that are not rating models to compare (the mean and popularity
#: baselines are references, CFEnsemble is a classifier)
NOT_RATING_MODELS = ("GlobalMean", "UserMean", "ItemMean", "UserItemMean", "Popularity")


def rating_estimators() -> dict:
    """Class name -> class of every exported estimator that models ratings, the mean and
    popularity baselines (:data:`NOT_RATING_MODELS`) left out."""
    from .registry import estimators  # noqa: PLC0415

    return {cls.__name__: cls for cls in estimators().values()
            if cls.__name__ not in NOT_RATING_MODELS}


#: rating estimators that, by design, refuse problems of ml-100k's size (a dense
#: Hessian of ``(n_users + n_items)(k + 1)`` variables: 6.7 GB on ml-100k at rank 10)
SMALL_PROBLEMS_ONLY = ("NewtonMF",)


def default_estimators(*, iterative_only=False, exclude=(), small_problems=False,
                       random_state=0) -> dict:
    """Every rating estimator (:func:`rating_estimators`) with its default parameters,
    seeded with ``random_state`` where it takes one; ``iterative_only`` keeps those whose
    fit runs more than one iteration (a ``max_iter`` parameter, Blend excepted);
    :data:`SMALL_PROBLEMS_ONLY` ones only with ``small_problems``."""
    out = {}
    for name, cls in rating_estimators().items():
        if name in exclude or (name in SMALL_PROBLEMS_ONLY and not small_problems):
            continue
        model = cls()
        params = model.get_params()
        if iterative_only and ("max_iter" not in params or name == "Blend"):
            continue
        if "random_state" in params:
            model.set_params(random_state=random_state)
        out[name] = model
    return out


def load_splits(predefined: dict, *, download=True) -> dict:
    """Predefined splits by name: ``{"ml-100k": ["u1", "u2"], "netflix": ["course"]}``
    gives ``{"ml-100k/u1": Split, "ml-100k/u2": Split, "netflix/course": Split}``."""
    from .data import load_predefined_split  # noqa: PLC0415

    return {f"{dataset}/{name}": load_predefined_split(dataset, name, download=download)
            for dataset, names in predefined.items() for name in names}


#: search spaces of the evaluation's families around their defaults: "full" (the
#: benchmark) and "quick" (the default and one neighbour for the cheap families, the
#: default alone for the costly ones: notebook 07 in minutes)
FAMILY_SPACES = {
    "full": {
        "bias baseline": {"regularization": [3.0, 5.0, 10.0]},
        "ALS": {"regularization": [10.0, 15.0, 20.0], "n_factors": [10, 30]},
        "BCD": {"regularization": [2e-4, 3e-4, 5e-4]},
        "Lasso-MF": {"regularization": [4.0, 5.0, 6.0]},
        "SGD": {"regularization": [0.05, 0.1], "n_factors": [50, 100]},
        "SVRG": {"regularization": [0.08, 0.12]},
        "SVD++": {"regularization": [0.02, 0.05], "n_factors": [20, 50]},
        "Grassmann (RGD)": {"regularization": [0.1, 0.3, 1.0], "n_factors": [3, 5]},
        "SoftImpute": {"regularization": [5.0, 10.0, 20.0]},
        "hybrid": {"regularization": [5.0, 10.0, 20.0]},
        "BayesianMF": {"n_factors": [10, 20]},
    },
    "quick": {
        "bias baseline": {"regularization": [5.0, 10.0]},
        "ALS": {"regularization": [15.0, 20.0]},
        "BCD": {},
        "Lasso-MF": {},
        "SGD": {},
        "SVRG": {},
        "SVD++": {},
        "Grassmann (RGD)": {"regularization": [0.3, 1.0]},
        "SoftImpute": {"regularization": [10.0, 20.0]},
        "hybrid": {"regularization": [10.0, 20.0]},
        "BayesianMF": {},
    },
}

#: the estimator behind each family name of :data:`FAMILY_SPACES`
FAMILY_ESTIMATORS = {
    "bias baseline": "BiasBaseline", "ALS": "ALS", "BCD": "BiasedBCD", "Lasso-MF": "LassoMF",
    "SGD": "SGD", "SVRG": "SVRG", "SVD++": "SVDpp", "Grassmann (RGD)": "RGD",
    "SoftImpute": "SoftImpute", "hybrid": "Hybrid", "BayesianMF": "BayesianMF",
}


def family_table(families: dict) -> pd.DataFrame:
    """One row per family of :func:`evaluation_families`: its estimator class, the
    parameters it starts from that differ from the class defaults, and its search space."""
    rows = []
    for name, (model, space) in families.items():
        defaults = type(model)().get_params()
        changed = {k: v for k, v in model.get_params().items()
                   if k != "random_state" and v != defaults.get(k)}
        rows.append({"family": name, "estimator": type(model).__name__,
                     "settings": ", ".join(f"{k}={v!r}" for k, v in changed.items())
                     or "defaults",
                     "search space": ", ".join(f"{k} in {v!r}" for k, v in space.items())
                     or "none (defaults)"})
    return pd.DataFrame(rows).set_index("family")


def evaluation_families(grid="quick", *, random_state=0, overrides=None) -> dict:
    """The families of the evaluation (notebook 07, ``benchmarks/bench_evaluation.py``):
    name -> (estimator with its defaults, search space of :data:`FAMILY_SPACES` [grid]).

    ``overrides`` maps a family name to parameters set on its estimator (e.g. fewer
    Gibbs sweeps for a quick run); spaces are searched around those.
    """
    from .registry import make_estimator  # noqa: PLC0415

    if grid not in FAMILY_SPACES:
        raise ValueError(f"grid must be one of {sorted(FAMILY_SPACES)}, got {grid!r}")
    unknown = sorted(set(overrides or {}) - set(FAMILY_ESTIMATORS))
    if unknown:
        raise ValueError(f"overrides name unknown families {unknown}; families: "
                         f"{list(FAMILY_ESTIMATORS)}")
    out = {}
    for name, space in FAMILY_SPACES[grid].items():
        model = make_estimator(FAMILY_ESTIMATORS[name])
        if "random_state" in model.get_params():
            model.set_params(random_state=random_state)
        model.set_params(**(overrides or {}).get(name, {}))
        out[name] = (model, dict(space))
    return out
