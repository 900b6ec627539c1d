"""MPI plumbing for the NetPyNE node (mpi4py; optional).

Under ``mpiexec -n N`` rank 0 is the rank the lockstep runtime talks to. It broadcasts each
call (configure, step, finish) with its arguments; ranks > 0 sit in ``NetpyneAdapter.follow()``
and run the same collective NEURON calls. ``mpi4py`` must be imported before ``neuron`` for
NEURON to start MPI: :func:`world` does that import and must run before anything imports
``neuron`` (the adapter calls it in its constructor).
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def world():
    """COMM_WORLD when running with more than one rank, else None."""
    if os.environ.get("COSIM_NO_MPI"):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2:
        return None
    import sys
    if "neuron" in sys.modules:
        import neuron  # noqa: F401  (already imported; check it saw MPI)
        from neuron import h
        if int(h.ParallelContext().nhost()) != comm.Get_size():
            raise RuntimeError("neuron was imported before mpi4py: NEURON runs without MPI on "
                               f"{comm.Get_size()} ranks; import mpi4py first")
    return comm
