"""MPI plumbing: the communicator, collectives on NumPy arrays with a byte count, and one
rule for failures (a rank that fails ends every rank, with its message).

mpi4py is an optional dependency (``pip install 'mflib[mpi]'``, MPICH from PyPI); nothing
here is imported by a single-process fit.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

import numpy as np


def mpi():
    """The ``mpi4py.MPI`` module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"MPI needs mpi4py ({exc}); install it with `pip install 'mflib[mpi]'` (MPICH from "
            "PyPI, no root needed) and start the program with `mpiexec -n P python ...`"
        ) from exc
    return MPI


def world():
    """``MPI.COMM_WORLD``, or None when mpi4py is missing or the program runs alone."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError:
        return None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


class Exchange:
    """Collectives of one communicator on NumPy arrays, counting the bytes this rank sends
    (``bytes_sent``: what a scaling benchmark reports per epoch)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.bytes_sent = 0

    def allreduce_sum(self, value):
        """Sum over ranks of a float or an array (every rank gets the sum)."""
        MPI = mpi()
        if np.isscalar(value) or np.ndim(value) == 0:
            self.bytes_sent += 8
            return self.comm.allreduce(float(value), op=MPI.SUM)
        local = np.ascontiguousarray(value, dtype=np.float64)
        out = np.empty_like(local)
        self.comm.Allreduce(local, out, op=MPI.SUM)
        self.bytes_sent += local.nbytes
        return out

    def allgather_rows(self, local: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """Concatenate the ranks' row blocks: rank r holds rows ``bounds[r]:bounds[r+1]``.

        ``local`` is (rows, ...) C-contiguous; every rank gets the full (bounds[-1], ...)
        array in rank order (``Allgatherv``).
        """
        local = np.ascontiguousarray(local)
        row = int(np.prod(local.shape[1:])) if local.ndim > 1 else 1
        counts = np.diff(bounds) * row
        out = np.empty((int(bounds[-1]),) + local.shape[1:], dtype=local.dtype)
        mpi_type = mpi()._typedict[local.dtype.char]
        self.comm.Allgatherv([local, mpi_type],
                             [out, (counts, bounds[:-1] * row), mpi_type])
        self.bytes_sent += local.nbytes * (self.size - 1)
        return out

    def alltoallv(self, send: np.ndarray, send_counts: np.ndarray) -> np.ndarray:
        """Rank r sends ``send[offsets[d]:offsets[d+1]]`` to each rank d (rows of ``send``
        grouped by destination, ``send_counts[d]`` rows each); returns what it receives,
        grouped by source rank."""
        send = np.ascontiguousarray(send)
        row = int(np.prod(send.shape[1:])) if send.ndim > 1 else 1
        send_counts = np.asarray(send_counts, dtype=np.int64)
        recv_counts = np.empty_like(send_counts)
        self.comm.Alltoall(send_counts, recv_counts)
        out = np.empty((int(recv_counts.sum()),) + send.shape[1:], dtype=send.dtype)
        offsets = lambda c: np.concatenate([[0], np.cumsum(c)[:-1]]) * row  # noqa: E731
        mpi_type = mpi()._typedict[send.dtype.char]
        self.comm.Alltoallv([send, (send_counts * row, offsets(send_counts)), mpi_type],
                            [out, (recv_counts * row, offsets(recv_counts)), mpi_type])
        self.bytes_sent += int(send_counts.sum() - send_counts[self.rank]) * row * \
            send.itemsize
        return out

    def allgather_objects(self, value) -> list:
        """Small Python objects (ids, counts) from every rank, in rank order."""
        return self.comm.allgather(value)


@contextlib.contextmanager
def abort_on_error(comm):
    """End every rank when this one fails, instead of leaving the others waiting forever
    in a collective: print the error (rank-tagged) and call ``MPI_Abort``."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - every failure must end every rank
        if comm is None or comm.Get_size() == 1:
            raise
        rank = comm.Get_rank()
        sys.stderr.write(f"mflib: rank {rank} of {comm.Get_size()} failed, ending every rank: "
                         f"{type(exc).__name__}: {exc}\n")
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        comm.Abort(1)
        raise  # MPI_Abort may return before the kill arrives: never carry on as if fine
