"""The debugger as plain Python: an :class:`Engine` (a model, its SAEs, a reference corpus) and
the computations it answers — node tables and traces, ablations and patches, patching sweeps,
attribution graphs, the logit lens, generation. Nothing here knows about HTTP."""

from .engine import Engine
from .loading import EngineSpec, load_engine

__all__ = ["Engine", "EngineSpec", "load_engine"]
