"""The one execution policy: threads, BLAS, device and communicator of a fit.

Every estimator's ``fit`` runs inside :func:`fit_context`, which resolves the
estimator's ``n_jobs`` and ``device`` (and the communicator set by
:func:`config_context`) into an :class:`ExecutionPolicy`, sets numba's thread count,
limits BLAS, and makes the policy available to solvers and kernels through
:func:`current`. Nothing else in mflib sets thread counts, limits BLAS, picks the
array module (that is :mod:`mflib.backend`, asked through the policy) or decides
whether a kernel runs serially: those decisions are made here, once.

* **Threads.** ``n_jobs`` is the number of numba threads: None or -1 all of them,
  ``-2`` all but one, a positive integer that many.
* **BLAS.** Limited to one thread during a fit. numba's parallel kernels already use
  every core and call BLAS from inside their threads (ridge Gram matrices); OpenBLAS's
  own threads would oversubscribe the cores, and numba's spinning workers starve them
  (a 1682 x 205 SVD ran 20-50x slower on a loaded 2-core machine).
* **Serial cut-offs.** A parallel region costs a thread wake-up per call, which on a
  busy machine reaches milliseconds; jobs smaller than :data:`SERIAL_BELOW` run on one
  thread (:func:`run_parallel`, :func:`kernel_threads`).
* **Device.** ``"cpu"``, ``"gpu"`` or ``"auto"``; the policy's ``xp`` is NumPy or CuPy.
* **Communicator.** ``None`` (one process) or an mpi4py communicator: a distributed fit
  is the same estimator under a policy whose ``comm`` has several ranks.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import numbers
from dataclasses import dataclass

import numba

from .backend import get_namespace, resolve_device

#: jobs below this size (ratings, pairs, rows...) run on one thread; measured on a
#: 2-core machine under load (see the commit messages of each entry)
SERIAL_BELOW = {
    # row-wise dot products: below 200k pairs waking the pool costs more than the work,
    # and spinning workers slow the serial kernels that run next
    "pair_dots": 200_000,
    # residuals of every training rating (SGD bookkeeping)
    "residuals": 1 << 20,
    # variable projection (Grassmann family): ridge solves and residuals of f(U)
    "variable_projection": 100_000,
    # the blocked SGD epoch (parallel="auto" or "blocked"): below this many ratings its
    # strata run on one thread. Rank 64, 2 cores shared (load 6-8), epoch kernel only,
    # one thread (plain shuffle) vs blocked on two: 3M ratings 0.38 s vs 0.64 s (float32),
    # 0.71 vs 0.83 s (float64); 10M ratings 5.2 s vs 3.3 s (float32), 6.9 vs 4.9 s
    # (float64); at load 3, 10M: 1.26 s vs 0.97 s (float32). Each epoch runs
    # n_blocks strata, each a parallel region whose wake-up costs several ms on a busy
    # machine, so small data loses (ml-100k: 2.4 s vs 0.67 s a fit). Hogwild is never
    # chosen: it lost to blocked at every size measured (10M float32: 5.7 s), its random
    # row accesses miss the cache that blocks keep, and it is not reproducible
    "sgd_blocked": 5_000_000,
}

#: rows of (chunk, k) temporaries a GPU kernel handles at once
GPU_CHUNK = 1 << 20


@dataclass(frozen=True)
class ExecutionPolicy:
    """How a fit runs; see the module docstring.

    Attributes
    ----------
    n_jobs : int
        numba threads.
    blas_threads : int
        BLAS threads (1 inside fits).
    device : {"cpu", "gpu"}
    comm : mpi4py communicator or None
    """

    n_jobs: int
    blas_threads: int = 1
    device: str = "cpu"
    comm: object = None

    @property
    def xp(self):
        """The array module of ``device``: ``numpy`` or ``cupy``."""
        return get_namespace(self.device)

    @property
    def rank(self) -> int:
        return 0 if self.comm is None else int(self.comm.Get_rank())

    @property
    def size(self) -> int:
        return 1 if self.comm is None else int(self.comm.Get_size())

    @property
    def is_root(self) -> bool:
        """True on the process that prints and writes files (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def exchange():
    """The :class:`mflib.distributed.Exchange` of the current fit's communicator (one per
    fit, so its ``bytes_sent`` counts the fit's communication); None without one."""
    policy = _current.get()
    if policy is None or policy.comm is None:
        return None
    if id(policy) not in _exchanges:
        from .distributed.comm import Exchange  # noqa: PLC0415  (mpi4py is optional)

        _exchanges[id(policy)] = (policy, Exchange(policy.comm))
    return _exchanges[id(policy)][1]


_exchanges: dict = {}  # id(policy) -> (policy, its Exchange), while the fit runs


def max_threads() -> int:
    """The threads numba was started with (``NUMBA_NUM_THREADS``)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def resolve_n_jobs(n_jobs) -> int:
    """Threads for ``n_jobs``: None or -1 all, -2 all but one, k >= 1 that many."""
    limit = max_threads()
    if n_jobs is None:
        return limit
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None, -1 or an integer >= 1, got {n_jobs!r}")
    if n_jobs < 0:
        return max(1, limit + 1 + int(n_jobs))
    if n_jobs > limit:
        raise ValueError(
            f"n_jobs={n_jobs} exceeds the {limit} threads numba was started with; use "
            f"n_jobs <= {limit} (or set NUMBA_NUM_THREADS before importing mflib)"
        )
    return int(n_jobs)


# the defaults a user sets for every fit in a block (config_context), and the policy of
# the fit in progress
_defaults: contextvars.ContextVar[tuple] = contextvars.ContextVar("mflib_execution_defaults",
                                                                  default=())
_current: contextvars.ContextVar[ExecutionPolicy | None] = contextvars.ContextVar(
    "mflib_execution_policy", default=None)


@contextlib.contextmanager
def config_context(**defaults):
    """Defaults for every fit inside the block, e.g. ``config_context(comm=MPI.COMM_WORLD)``.

    Keys: ``comm`` (an mpi4py communicator), ``n_jobs`` and ``device`` (used when an
    estimator leaves its own at None / does not have the parameter).
    """
    unknown = set(defaults) - {"comm", "n_jobs", "device"}
    if unknown:
        raise TypeError(f"config_context got unknown setting(s) {sorted(unknown)}; "
                        "known: comm, n_jobs, device")
    token = _defaults.set(tuple({**dict(_defaults.get()), **defaults}.items()))
    try:
        yield
    finally:
        _defaults.reset(token)


def current() -> ExecutionPolicy:
    """The policy of the fit in progress; outside a fit, the defaults (all threads, CPU)."""
    policy = _current.get()
    if policy is not None:
        return policy
    d = dict(_defaults.get())
    return ExecutionPolicy(resolve_n_jobs(d.get("n_jobs")), blas_threads=0,
                           device=resolve_device(d.get("device", "cpu")), comm=d.get("comm"))


def policy_for(estimator) -> ExecutionPolicy:
    """Resolve an estimator's ``n_jobs`` / ``device`` (and the defaults) into a policy."""
    d = dict(_defaults.get())
    n_jobs = getattr(estimator, "n_jobs", None)
    if n_jobs is None:
        n_jobs = d.get("n_jobs")
    device = getattr(estimator, "device", None) or d.get("device", "cpu")
    devices = getattr(type(estimator), "_devices", ("cpu",))
    device = resolve_device(device, supported=devices, owner=type(estimator).__name__)
    return ExecutionPolicy(resolve_n_jobs(n_jobs), 1, device, d.get("comm"))


@functools.lru_cache(maxsize=1)
def _blas_controller():
    import scipy.linalg.cython_blas  # noqa: F401, PLC0415  (numba's np.dot calls into it)
    from threadpoolctl import ThreadpoolController  # noqa: PLC0415

    return ThreadpoolController()


def single_threaded_blas():
    """One BLAS thread for the block (a no-op inside a fit, which is limited already).

    Kernels that call BLAS from numba threads enter it when called outside a fit.
    """
    policy = _current.get()
    if policy is not None and policy.blas_threads == 1:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


@contextlib.contextmanager
def numba_threads(n: int):
    """numba's thread count set to ``n`` for the block, then restored."""
    previous = numba.get_num_threads()
    if previous == n:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


@contextlib.contextmanager
def use_policy(policy: ExecutionPolicy):
    """Run the block under ``policy``: numba threads, BLAS limit, :func:`current`."""
    token = _current.set(policy)
    try:
        with numba_threads(policy.n_jobs), contextlib.ExitStack() as stack:
            if policy.comm is not None and policy.comm.Get_size() > 1:
                # a rank that fails mid-fit ends every rank (MPI_Abort with its message)
                # instead of leaving the others waiting in a collective forever
                from .distributed.comm import abort_on_error  # noqa: PLC0415

                stack.enter_context(abort_on_error(policy.comm))
            if policy.blas_threads:
                stack.enter_context(_blas_controller().limit(limits=policy.blas_threads,
                                                             user_api="blas"))
            yield policy
    finally:
        _current.reset(token)
        _exchanges.pop(id(policy), None)


def fit_context(estimator):
    """The context the fit template enters around ``_init_state``, the loop and
    ``_finalize``: ``with fit_context(self) as policy: ...``."""
    return use_policy(policy_for(estimator))


# True inside every_path_parallel(): each cut-off of SERIAL_BELOW counts as 0
_all_parallel: contextvars.ContextVar[bool] = contextvars.ContextVar("mflib_all_parallel",
                                                                     default=False)


@contextlib.contextmanager
def every_path_parallel():
    """Inside the block, every job counts as large enough for the threads (when numba
    has more than one): a fit's warm-up on a tiny problem then also loads the parallel
    entry points its real, larger problem will use (see
    :meth:`mflib.base.FactorizationEstimator._warm_up`)."""
    token = _all_parallel.set(True)
    try:
        yield
    finally:
        _all_parallel.reset(token)


def run_parallel(kind: str, size: int) -> bool:
    """Whether a ``kind`` job of ``size`` should use the threads: numba has more than one
    (as the policy set it) and the job is not below its cut-off in :data:`SERIAL_BELOW`.
    Kernels with a serial and a parallel entry point pick one by it."""
    big = size >= SERIAL_BELOW[kind] or _all_parallel.get()
    return big and numba.get_num_threads() > 1


def kernel_threads(kind: str, size: int):
    """One numba thread for the block when :func:`run_parallel` says no (for kernels that
    have only a parallel entry point)."""
    if run_parallel(kind, size) or numba.get_num_threads() == 1:
        return contextlib.nullcontext()
    return numba_threads(1)


__all__ = [
    "GPU_CHUNK",
    "SERIAL_BELOW",
    "ExecutionPolicy",
    "config_context",
    "current",
    "every_path_parallel",
    "fit_context",
    "kernel_threads",
    "max_threads",
    "numba_threads",
    "policy_for",
    "resolve_n_jobs",
    "run_parallel",
    "single_threaded_blas",
    "use_policy",
]
