"""Explanation endpoints: a node's explanations, a batch lookup for the node table, search by
explanation text, and "explain this node now". Each app holds one :class:`Explanations` (its
datasets' explanation indexes) at ``app.state.explanations``; the routes reach it with ``Depends``.

Explanations are read from beside each loaded node dataset (``dataset.store`` / ``dataset.prefix``;
see :mod:`mechscope.datasets.explanations.store`); each dataset's index is held in memory and
refreshed when its explanation blobs change (checked at most every ``REFRESH_S`` seconds, and at
once after "explain now").
"""

from __future__ import annotations

import threading
import time

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from ...explanation_schemas import (ExplainNodeRequest, ExplanationBrief, ExplanationHit, ExplanationKind,
                                  ExplanationLookupRequest, ExplanationLookupResult, ExplanationModel,
                                  ExplanationSearchResult, NodeExplanations)
from ...server_schemas import MessageErrorBody
from ..errors import NodeNotFound

REFRESH_S = 5.0


class _Indexes:
    """Per dataset name: (signature of its explanation blobs, time checked, ExplanationIndex)."""

    def __init__(self, state) -> None:  # type: ignore[no-untyped-def]
        self.state = state
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, float, object]] = {}
        self._stores: dict[str, object] = {}

    def store(self, name: str):  # type: ignore[no-untyped-def]
        """The dataset's ExplanationStore, one per dataset (its lock serialises explain-now writes)."""
        from mechscope.datasets.explanations import ExplanationStore
        dataset = self.state.datasets[name]
        if not hasattr(dataset, "store"):
            return None
        with self._lock:
            found = self._stores.get(name)
            if found is None:
                found = self._stores[name] = ExplanationStore(dataset.store, getattr(dataset, "prefix", ""))
        return found

    def _signature(self, store) -> tuple:  # type: ignore[no-untyped-def]
        from mechscope.datasets.stores import join_key
        base = join_key(store.prefix, "")
        return tuple((e.key, e.size) for e in store.store.list_entries(base)
                     if "explanations/" in e.key and not e.key.startswith(join_key(store.prefix, "shards")))

    def get(self, name: str, *, force: bool = False):  # type: ignore[no-untyped-def]
        from mechscope.datasets.explanations.search import ExplanationIndex
        store = self.store(name)
        if store is None:
            return ExplanationIndex([])
        with self._lock:
            cached = self._cache.get(name)
        now = time.monotonic()
        if cached is not None and not force and now - cached[1] < REFRESH_S:
            return cached[2]
        signature = self._signature(store)
        if cached is not None and not force and cached[0] == signature:
            with self._lock:
                self._cache[name] = (signature, now, cached[2])
            return cached[2]
        index = ExplanationIndex(store.iter_all())
        with self._lock:
            self._cache[name] = (signature, now, index)
        return index


def _node_key(kind: str, layer: int | None, index: int, sae: str | None):  # type: ignore[no-untyped-def]
    from mechscope.datasets.explanations import NodeKey
    from mechscope.inference.hooks import layer_of
    if kind == "sae_latent":
        if not sae:
            raise HTTPException(422, detail=[{"loc": ["query", "sae"], "msg": "sae_latent needs sae (the SAE's hook "
                                              "point)", "type": "missing"}])
        return NodeKey(kind, layer_of(sae), index, sae)
    return NodeKey(kind, layer, index)


def _model(e) -> ExplanationModel:  # type: ignore[no-untyped-def]
    return ExplanationModel(text=e.text, method=e.method, explainer=e.explainer, score=e.score, scorer=e.scorer,
                            baselines=e.baselines, detection=e.detection, fuzzing=(e.details or {}).get("fuzzing"))


def _brief(e) -> ExplanationBrief:  # type: ignore[no-untyped-def]
    return ExplanationBrief(text=e.text, score=e.score, method=e.method, explainer=e.explainer)


class Explanations:
    """The explanations of the server's loaded node datasets: lookups, search and explain-now."""

    def __init__(self, state) -> None:  # type: ignore[no-untyped-def]
        self.state = state
        self.indexes = _Indexes(state)

    def names(self, dataset: str | None) -> list[str]:
        self.state.require_engine()
        if dataset is not None and dataset not in self.state.datasets:
            raise NodeNotFound(f"no dataset named {dataset!r}; loaded: {sorted(self.state.datasets)}")
        return [dataset] if dataset is not None else sorted(self.state.datasets)

    def node_explanations(self, name: str, node) -> NodeExplanations:  # type: ignore[no-untyped-def]
        found = self.indexes.get(name).for_node(node)
        return NodeExplanations(dataset=name, key=str(node), kind=node.kind, layer=node.layer, index=node.index,
                                sae=node.hook_point, explanations=[_model(e) for e in found])

    def search(self, q: str, limit: int, kind: str | None, dataset: str | None) -> ExplanationSearchResult:
        hits = []
        for name in self.names(dataset):
            for h in self.indexes.get(name).search(q, limit=limit, kind=kind):
                hits.append(ExplanationHit(dataset=name, key=str(h.node), kind=h.node.kind, layer=h.node.layer,
                                           index=h.node.index, sae=h.node.hook_point,
                                           explanation=_brief(h.explanation), matched=h.matched))
        hits.sort(key=lambda h: (-h.matched, -(h.explanation.score or -2.0)))
        return ExplanationSearchResult(query=q, hits=hits[:limit])

    def lookup(self, request: ExplanationLookupRequest) -> ExplanationLookupResult:
        out: dict[str, ExplanationBrief] = {}
        keys = [_node_key(n.kind, n.layer, n.index, n.sae) for n in request.nodes]
        for name in self.names(request.dataset):
            index = self.indexes.get(name)
            for key in keys:
                best = index.best(key)
                if best is not None and str(key) not in out:
                    out[str(key)] = _brief(best)
        return ExplanationLookupResult(explanations=out)

    def for_node(self, node, dataset: str | None) -> NodeExplanations:  # type: ignore[no-untyped-def]
        listed = self.names(dataset)
        if not listed:
            raise NodeNotFound("no node datasets are loaded (start the server with --datasets)")
        results = [self.node_explanations(name, node) for name in listed]
        return next((r for r in results if r.explanations), results[0])

    def explain_now(self, request: ExplainNodeRequest) -> NodeExplanations:
        from mechscope.datasets.explanations import (LlmAuthError, LlmError, LlmNotConfiguredError,
                                                     LlmUnavailableError, explain_dataset, make_explainer)
        node = _node_key(request.kind, request.layer, request.index, request.sae)
        for name in self.names(request.dataset):
            dataset = self.state.datasets[name]
            if not hasattr(dataset, "groups") or not hasattr(dataset, "store"):
                continue
            try:
                dataset.find_group(node.kind, node.layer, node.hook_point)
            except Exception:  # noqa: BLE001 - this dataset does not hold the node; try the next
                continue
            try:
                explainer, simulator = make_explainer(request.explainer)
                explain_dataset(dataset, explainer, simulator, store=self.indexes.store(name), nodes=[node],
                                progress=False)
            except LlmNotConfiguredError as e:
                raise HTTPException(409, detail=str(e)) from None
            except LlmUnavailableError as e:
                raise HTTPException(503, detail=str(e), headers={"Retry-After": "30"}) from None
            except (LlmAuthError, LlmError) as e:
                raise HTTPException(502, detail=str(e)) from None
            self.indexes.get(name, force=True)
            return self.node_explanations(name, node)
        raise NodeNotFound(f"no loaded dataset holds {node}")


def explanations(request: Request) -> Explanations:
    """FastAPI dependency: the app's :class:`Explanations`."""
    return request.app.state.explanations


router = APIRouter(tags=["explanations"], responses={
    404: {"model": MessageErrorBody, "description": "no loaded dataset of that name, or none holds the node"}})


@router.get("/explanations/search", response_model=ExplanationSearchResult)
async def search(q: str = Query(min_length=1, max_length=200, description="words, e.g. 'years'"),
                 limit: int = Query(default=20, ge=1, le=200), kind: ExplanationKind | None = None,
                 dataset: str | None = Query(default=None, max_length=200),
                 ex: Explanations = Depends(explanations)) -> ExplanationSearchResult:
    """Nodes whose explanations match the query words, best matches first."""
    return await anyio.to_thread.run_sync(ex.search, q, limit, kind, dataset)


@router.post("/explanations/lookup", response_model=ExplanationLookupResult)
async def lookup(request: ExplanationLookupRequest, ex: Explanations = Depends(explanations)) -> ExplanationLookupResult:
    """The best explanation of each node (for the node table's explanation column)."""
    return await anyio.to_thread.run_sync(ex.lookup, request)


@router.get("/explanations/{kind}/{layer}/{index}", response_model=NodeExplanations)
async def for_node(kind: ExplanationKind, layer: int = Path(ge=0, le=10_000), index: int = Path(ge=0, le=10**9),
                   sae: str | None = Query(default=None, max_length=200),
                   dataset: str | None = Query(default=None, max_length=200),
                   ex: Explanations = Depends(explanations)) -> NodeExplanations:
    """Every explanation of one node (mechscope's per explainer, then TDB-layout files'), with
    scores and baselines. An empty list when none exists yet."""
    node = _node_key(kind, layer, index, sae)
    return await anyio.to_thread.run_sync(ex.for_node, node, dataset)


@router.post("/explanations/explain", response_model=NodeExplanations,
             responses={409: {"model": MessageErrorBody, "description": "the LLM explainer is not configured"},
                        502: {"model": MessageErrorBody, "description": "the LLM endpoint refused or failed"},
                        503: {"model": MessageErrorBody,
                              "description": "the LLM endpoint is unreachable or overloaded"}})
async def explain_now(request: ExplainNodeRequest, ex: Explanations = Depends(explanations)) -> NodeExplanations:
    """Run the explainer ('offline', or 'llm' when configured) on one node now, store and return
    the node's explanations."""
    return await anyio.to_thread.run_sync(ex.explain_now, request)
