"""A typed client for the activation server: one method per endpoint, taking and returning the same
pydantic models as the engine.

    from mechscope.activation_server.client import Client
    from mechscope.activation_server.schemas import AttributionRequest, LossSpec, PromptSpec

    with Client("http://127.0.0.1:8000", token=None) as client:
        result = client.attribute(AttributionRequest(
            prompts=[PromptSpec(text="When Mary and John went to the store, John gave a drink to")],
            loss=LossSpec(targets=[" Mary"], distractors=[" John"])))
        print(result.nodes[0].key, result.nodes[0].values[0].total_effect)

Errors raise :class:`ApiError` (``status``, ``detail``; for 422 ``detail`` is a list of
``{"loc", "msg", "type"}``; for 503 ``retry_after`` says when to retry).
"""

from __future__ import annotations

import math
import typing
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from .server_schemas import (DatasetInfo, DetokenizeRequest, DetokenizeResult, GenerateRequest, GenerateResult, Health,
                         NodeActivationsRequest, NodeActivationsResult, NodePage, SaeInfo, ServerInfo,
                         TokenizeRequest, TokenizeResult, WriteTokensRequest)
from .schemas import (AttributionRequest, AttributionResult, GraphRequest, GraphResult, HeadGridRequest, HeadGridResult,
                      LogitLensRequest,
                      LogitLensResult, NodeRef, PatchingSweepRequest, PatchingSweepResult, PathPatchingRequest,
                      PathPatchingResult, WriteTokensResult)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A non-2xx answer from the server."""

    def __init__(self, status: int, detail: Any, *, method: str = "", path: str = "", retry_after: float | None = None):
        self.status, self.detail, self.method, self.path, self.retry_after = status, detail, method, path, retry_after
        super().__init__(f"{method} {path} -> {status}: {_describe(detail)}")

    @property
    def fields(self) -> list[str]:
        """For 422: the dotted request fields at fault (``prompts.0.text``)."""
        if not isinstance(self.detail, list):
            return []
        return [".".join(str(p) for p in item.get("loc", [])[1:]) for item in self.detail if isinstance(item, dict)]


def _describe(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail if isinstance(d, dict))
    return str(detail)


def _restore_nan(model: type[BaseModel], data: Any) -> Any:
    """JSON has no NaN: the server sends null for NaN floats. Put NaN back where a field is a plain
    ``float`` (recursing into nested models and lists of models) so the models validate."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        if name not in out:
            continue
        value, annotation = out[name], field.annotation
        if annotation is float and value is None:
            out[name] = math.nan
            continue
        inner = _model_in(annotation)
        if inner is None:
            continue
        if isinstance(value, list):
            out[name] = [_restore_nan(inner, v) for v in value]
        elif isinstance(value, dict):
            out[name] = _restore_nan(inner, value)
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class Client:
    """A synchronous client (thread-safe: httpx.Client may be shared between threads)."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, token: str | None = None, timeout: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, result: type[M] | Any, body: BaseModel | None = None,
              params: dict | None = None):
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self._http.request(method, path, content=content, headers=headers,
                                      params={k: v for k, v in (params or {}).items() if v is not None})
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            retry = response.headers.get("Retry-After")
            raise ApiError(response.status_code, detail, method=method, path=path,
                           retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None)
        data = response.json()
        if typing.get_origin(result) is list:
            item = typing.get_args(result)[0]
            return [item.model_validate(_restore_nan(item, d)) for d in data]
        return result.model_validate(_restore_nan(result, data))

    @staticmethod
    def _coerce(model: type[M], value: M | dict) -> M:
        return value if isinstance(value, model) else model.model_validate(value)

    # --- health and metadata -------------------------------------------------------------------------
    def healthz(self) -> Health:
        return self._call("GET", "/healthz", Health)

    def readyz(self) -> Health:
        """200 when ready; raises ApiError(503) while loading."""
        return self._call("GET", "/readyz", Health)

    def info(self) -> ServerInfo:
        return self._call("GET", "/api/v1/info", ServerInfo)

    def saes(self) -> list[SaeInfo]:
        return self._call("GET", "/api/v1/saes", list[SaeInfo])

    def datasets(self) -> list[DatasetInfo]:
        return self._call("GET", "/api/v1/datasets", list[DatasetInfo])

    # --- tokenizer -----------------------------------------------------------------------------------
    def tokenize(self, text: str, prepend_bos: bool = True) -> TokenizeResult:
        return self._call("POST", "/api/v1/tokenize", TokenizeResult, TokenizeRequest(text=text, prepend_bos=prepend_bos))

    def detokenize(self, ids: list[int]) -> DetokenizeResult:
        return self._call("POST", "/api/v1/detokenize", DetokenizeResult, DetokenizeRequest(ids=ids))

    # --- debugger ------------------------------------------------------------------------------------
    def attribute(self, request: AttributionRequest | dict) -> AttributionResult:
        return self._call("POST", "/api/v1/attribution", AttributionResult, self._coerce(AttributionRequest, request))

    def patching_sweep(self, request: PatchingSweepRequest | dict) -> PatchingSweepResult:
        return self._call("POST", "/api/v1/patching/sweep", PatchingSweepResult,
                          self._coerce(PatchingSweepRequest, request))

    def path_patching(self, request: PathPatchingRequest | dict) -> PathPatchingResult:
        return self._call("POST", "/api/v1/patching/path", PathPatchingResult, self._coerce(PathPatchingRequest, request))

    def graph(self, request: GraphRequest | dict) -> GraphResult:
        return self._call("POST", "/api/v1/graph", GraphResult, self._coerce(GraphRequest, request))

    def head_grid(self, request: HeadGridRequest | dict) -> HeadGridResult:
        """Per head: direct, estimated total and zero-ablation effects (layer × head)."""
        return self._call("POST", "/api/v1/heads/grid", HeadGridResult, self._coerce(HeadGridRequest, request))

    def logit_lens(self, request: LogitLensRequest | dict) -> LogitLensResult:
        return self._call("POST", "/api/v1/logit-lens", LogitLensResult, self._coerce(LogitLensRequest, request))

    def write_tokens(self, node: NodeRef | dict, k: int = 10) -> WriteTokensResult:
        return self._call("POST", "/api/v1/write-tokens", WriteTokensResult,
                          WriteTokensRequest(node=self._coerce(NodeRef, node), k=k))

    def generate(self, request: GenerateRequest | dict) -> GenerateResult:
        return self._call("POST", "/api/v1/generate", GenerateResult, self._coerce(GenerateRequest, request))

    # --- nodes ---------------------------------------------------------------------------------------
    def node_activations(self, request: NodeActivationsRequest | dict) -> NodeActivationsResult:
        return self._call("POST", "/api/v1/nodes/activations", NodeActivationsResult,
                          self._coerce(NodeActivationsRequest, request))

    def node(self, kind: str, layer: int, index: int, *, dataset: str | None = None, sae: str | None = None) -> NodePage:
        return self._call("GET", f"/api/v1/nodes/{kind}/{int(layer)}/{int(index)}", NodePage,
                          params={"dataset": dataset, "sae": sae})
