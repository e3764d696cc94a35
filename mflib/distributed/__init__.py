"""MPI: the same estimators across processes (``mpiexec -n P python ...``).

A distributed fit is an ordinary estimator fitted under an execution policy whose
communicator has several ranks (:func:`mflib.config_context` with ``comm=``); this
package holds what such fits share: the collectives (:mod:`.comm`), balanced blocks
(:mod:`.partition`), each rank's share of the training layout (:mod:`.layout`) and
reading a file shard by shard (:mod:`.shard`).
"""

from .comm import Exchange, abort_on_error, world
from .layout import DistributedLayout
from .partition import balanced_bounds, blocks

__all__ = ["DistributedLayout", "Exchange", "abort_on_error", "balanced_bounds", "blocks",
           "world"]
