"""The node datasets the server reads node pages from."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ...server_schemas import DatasetInfo
from ..node_datasets import describe, to_json
from ..service import ComputeService, service
from ..state import ServerState

router = APIRouter(tags=["metadata"])


def dataset_list(state: ServerState) -> list[DatasetInfo]:
    return [DatasetInfo(name=name, description=describe(ds), manifest=to_json(dict(ds.manifest)))
            for name, ds in sorted(state.datasets.items())]


@router.get("/datasets", response_model=list[DatasetInfo])
async def datasets(svc: ComputeService = Depends(service)) -> list[DatasetInfo]:
    svc.state.require_engine()
    return dataset_list(svc.state)
