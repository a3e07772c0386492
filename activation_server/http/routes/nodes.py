"""One node at a time: a component's activations on given prompts, and its page (top-activating
examples, samples, statistics) from the node datasets."""

from __future__ import annotations

import json

import anyio
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from mechscope.inference.errors import InvalidInputError

from ...engine.node_activations import node_activations as run_node_activations
from ...server_schemas import DatasetNodeKind, MessageErrorBody, NodeActivationsRequest, NodeActivationsResult, NodePage
from ..errors import NodeNotFound
from ..node_datasets import accepts_hook_point, to_json
from ..service import ComputeService, service
from ..state import ServerState

router = APIRouter(tags=["nodes"])


@router.post("/nodes/activations", response_model=NodeActivationsResult)
async def node_activations(request: NodeActivationsRequest, svc: ComputeService = Depends(service)) -> Response:
    """One component's activations on the given prompts: per token, or the (query, key) matrix for a head."""
    return await svc.compute("nodes/activations", request, lambda c: c.node_activations(request),
                             lambda e: run_node_activations(e, request))


@router.get("/nodes/{kind}/{layer}/{index}", response_model=NodePage,
            responses={404: {"model": MessageErrorBody, "description": "no dataset holds this node"}})
async def node_page(kind: DatasetNodeKind, layer: int = Path(ge=0, le=10_000), index: int = Path(ge=0, le=10**9),
                    dataset: str | None = Query(default=None, max_length=200,
                                                description="dataset name (default: the first that has the node)"),
                    sae: str | None = Query(default=None, max_length=200,
                                            description="sae_latent: the SAE's hook point, when ambiguous"),
                    svc: ComputeService = Depends(service)) -> NodePage:
    """A node's page data (top-activating examples, samples, statistics) from the node datasets."""
    state = svc.state
    state.require_engine()
    if dataset is not None and dataset not in state.datasets:
        raise NodeNotFound(f"no dataset named {dataset!r}; loaded: {sorted(state.datasets)}")
    names = [dataset] if dataset is not None else sorted(state.datasets)
    if not names:
        raise NodeNotFound("no node datasets are loaded (start the server with --datasets)")
    key = json.dumps(["nodes", kind, layer, index, sae, dataset])   # sae=None (text) is not None
    if (hit := svc.cache.get(key)) is not None:
        return hit
    page = await anyio.to_thread.run_sync(_find_node, state, names, kind, layer, index, sae)
    svc.cache.put(key, page)
    return page


def _find_node(state: ServerState, names: list[str], kind: str, layer: int, index: int, sae: str | None) -> NodePage:
    misses = []
    for name in names:
        dataset = state.datasets[name]
        try:
            if sae and accepts_hook_point(dataset):
                data = dataset.node(kind, layer, index, hook_point=sae)
            else:  # a dataset without hook points holds one group per (kind, layer)
                data = dataset.node(kind, layer, index)
        except (LookupError, FileNotFoundError, InvalidInputError) as e:
            misses.append(f"{name}: {e}")
            continue
        return NodePage(dataset=name, kind=kind, layer=layer, index=index, data=to_json(data))
    raise NodeNotFound(f"no dataset holds {kind} {layer}/{index}: " + "; ".join(misses))
