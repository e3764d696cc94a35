"""Shared benchmark plumbing: peer environments, timing, table output.

Peers (Spark, Surprise, fancyimpute) are installed into their own virtual
environments under ``benchmarks/.venvs/`` by :func:`peer_python`, never into
mflib's environment, and are run as subprocesses on the same data files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"


def peer_python(name: str, requirements: list[str], python: str | None = None) -> Path:
    """Python of a virtual environment ``benchmarks/.venvs/<name>`` holding ``requirements``.

    Created on first use (uv when available, else venv + pip); reused afterwards.
    """
    env = VENVS / name
    py = env / "bin" / "python"
    stamp = env / ".requirements"
    wanted = "\n".join(requirements)
    if py.exists() and stamp.exists() and stamp.read_text() == wanted:
        return py
    VENVS.mkdir(parents=True, exist_ok=True)
    uv = shutil.which("uv")
    if uv:
        cmd = [uv, "venv", "-q", "--clear", str(env)] + (["-p", python] if python else [])
        subprocess.run(cmd, check=True)
        subprocess.run([uv, "pip", "install", "-q", "-p", str(py), *requirements], check=True)
    else:
        subprocess.run([python or sys.executable, "-m", "venv", "--clear", str(env)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True)
    stamp.write_text(wanted)
    return py


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def print_table(rows, title: str, out: str | None = None) -> pd.DataFrame:
    """Print a markdown table (and write it to ``out`` if given); return the DataFrame."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    text = f"## {title}\n\n" + df.to_markdown(index=False, floatfmt=".4g") + "\n"
    print(text, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return df


def machine_line() -> str:
    return f"{os.cpu_count()} CPU cores, Python {sys.version.split()[0]}"


def skewed_ratings(n_users=70_000, n_items=10_000, n_ratings=10_000_000, rank=10,
                   noise=0.5, random_state=0):
    """A rating matrix with MovieLens-like skew and biases: user activity lognormal
    (sigma 1), item popularity lognormal (sigma 1.35: the most popular items get about
    40k ratings at the default size), ratings ``3.5 + b_u + c_i + p_u . q_i + noise``.

    Pairs are drawn independently by activity and popularity and repeated pairs dropped,
    so slightly fewer than ``n_ratings`` remain.
    """
    import numpy as np  # noqa: PLC0415

    from mflib.data.ratings import RatingMatrix  # noqa: PLC0415

    rng = np.random.default_rng(random_state)
    activity = rng.lognormal(0.0, 1.0, n_users)
    popularity = rng.lognormal(0.0, 1.35, n_items)
    draw = int(n_ratings * 1.02)
    users = rng.choice(n_users, draw, p=activity / activity.sum())
    items = rng.choice(n_items, draw, p=popularity / popularity.sum())
    keys = np.unique(users.astype(np.int64) * n_items + items)[:n_ratings]
    users, items = np.divmod(keys, n_items)
    P = rng.normal(0.0, 1.0 / np.sqrt(rank), (n_users, rank))
    Q = rng.normal(0.0, 1.0, (n_items, rank))
    value = (3.5 + rng.normal(0, 0.3, n_users)[users] + rng.normal(0, 0.5, n_items)[items]
             + np.einsum("nk,nk->n", P[users], Q[items]) + rng.normal(0, noise, len(keys)))
    return RatingMatrix.from_arrays(users, items, value)
