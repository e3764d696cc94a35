"""What notebooks and the command line call: parameter profiles, model grids, reports.

Profiles live in ``params/<profile>/``: ``common.yaml`` (optional, shared by every
notebook) and ``<notebook>.yaml`` (keys of that notebook's ``parameters`` cell).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import yaml

from .metrics import rating_metrics


def _read_yaml(path: Path) -> dict:
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
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


def compare_models(models: dict, split, *, eval_on: str = "test") -> pd.DataFrame:
    """Fit each model on ``split.train`` and score it on ``split.<eval_on>``.

    Returns one row per model: RMSE, MAE, fallback fraction, fit seconds, iterations
    and stop reason. The fitted models are left in ``models``.
    """
    target = getattr(split, eval_on)
    if target is None:
        raise ValueError(f"the split has no {eval_on!r} part")
    rows = []
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(split.train)
        seconds = time.perf_counter() - t0
        row = rating_metrics(model, target).to_dict()
        row.update(fit_seconds=seconds, n_iter=model.n_iter_, stop_reason=model.stop_reason_)
        rows.append(pd.Series(row, name=name))
    return pd.DataFrame(rows)


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
