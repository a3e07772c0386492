"""Read and write TDB / neuron-explainer "collated activation" datasets.

One JSON file per node at ``{dataset_path}/{layer}/{index}.json`` holds a NeuronRecord: the node's
top-activating text excerpts, a random sample, optional quantile samples and activation moments.
This module parses those files (current TDB files with ``dataclass_name`` tags, and older
neuron-explainer files without them or with ``idx``/``layer`` id fields), validates them, writes them
back in TDB's exact layout, and offers the helpers a viewer needs (token-pair matrices, display
normalisation).

Token-pair datasets (attention heads by token pair, ``*-by-token-pair``) store, per excerpt, the
flattened lower triangle of the (query i, key j <= i) matrix in row order as ``activations``. TDB
also accepts a *banded* variant in which query i holds ``min(i + 1, m)`` values for a window ``m``;
such records are accepted and exposed as ragged rows (:func:`token_pair_rows`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mechscope.inference.errors import InvalidInputError, MechscopeError


# ---- errors -----------------------------------------------------------------------------------


class RecordFormatError(MechscopeError, ValueError):
    """A record file is not a valid NeuronRecord. ``source`` names the file, ``field`` the field."""

    def __init__(self, message: str, *, source: str, field: str | None = None):
        super().__init__(message)
        self.source = source
        self.field = field


def _fail(source: str, field_path: str, problem: str) -> RecordFormatError:
    where = f"field '{field_path}'" if field_path else "the top level"
    return RecordFormatError(f"{source}: {where}: {problem}", source=source, field=field_path or None)


# ---- records ----------------------------------------------------------------------------------


@dataclass
class ActivationRecord:
    """One text excerpt: its tokens (as strings) and the node's activations on it.

    For token-pair datasets ``activations`` is the flattened lower triangle (see module docs).
    """

    tokens: list[str]
    activations: list[float]

    @classmethod
    def from_json(
        cls, obj: Any, *, source: str = "<json>", field_path: str = "", token_pair: bool = False
    ) -> ActivationRecord:
        if not isinstance(obj, Mapping):
            raise _fail(source, field_path, f"expected an ActivationRecord object, got {_type_name(obj)}")
        _check_dataclass_name(obj, "ActivationRecord", source, field_path)
        _check_keys(obj, {"tokens", "activations"}, {"tokens", "activations"}, source, field_path)
        tokens = obj["tokens"]
        tokens_path = _join_path(field_path, "tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _fail(source, tokens_path, "expected a list of strings")
        activations = _float_list(obj["activations"], source, _join_path(field_path, "activations"))
        record = cls(list(tokens), activations)
        record.validate(source=source, field_path=field_path, token_pair=token_pair)
        return record

    def validate(self, *, source: str = "<record>", field_path: str = "", token_pair: bool = False) -> None:
        """Raise RecordFormatError unless the activation count fits the token count."""
        n, count = len(self.tokens), len(self.activations)
        if token_pair:
            if _token_pair_window(n, count) is None:
                raise _fail(
                    source,
                    _join_path(field_path, "activations"),
                    f"a token-pair record with {n} tokens needs n(n+1)/2 = {n * (n + 1) // 2} activations "
                    f"(lower triangle; or a banded count min(i+1, m) summed over queries), got {count}",
                )
        elif n != count:
            raise _fail(
                source, _join_path(field_path, "activations"), f"{count} activations for {n} tokens (must be equal)"
            )

    def to_json(self) -> dict[str, Any]:
        return {"dataclass_name": "ActivationRecord", "activations": list(self.activations), "tokens": list(self.tokens)}


_NEURON_RECORD_KEYS = {
    "neuron_id",
    "random_sample",
    "random_sample_by_quantile",
    "quantile_boundaries",
    "mean",
    "variance",
    "skewness",
    "kurtosis",
    "most_positive_activation_records",
}
_MOMENTS = ("mean", "variance", "skewness", "kurtosis")


@dataclass
class NeuronRecord:
    """Everything a collated-activation file says about one node (neuron, head, latent)."""

    layer_index: int
    neuron_index: int
    most_positive_activation_records: list[ActivationRecord]
    random_sample: list[ActivationRecord] = field(default_factory=list)
    random_sample_by_quantile: list[list[ActivationRecord]] | None = None
    quantile_boundaries: list[float] | None = None
    mean: float = math.nan
    variance: float = math.nan
    skewness: float = math.nan
    kurtosis: float = math.nan

    @property
    def max_activation(self) -> float:
        """The largest activation over the top records (0.0 if there are none)."""
        values = [a for r in self.most_positive_activation_records for a in r.activations]
        return max(values) if values else 0.0

    @classmethod
    def from_json(
        cls,
        obj: Any,
        *,
        source: str = "<json>",
        token_pair: bool = False,
        layer_index: int | None = None,
        neuron_index: int | None = None,
    ) -> NeuronRecord:
        """Parse a NeuronRecord JSON object.

        Accepts TDB's layout and older ones: without ``dataclass_name`` tags, with ``idx``/``layer``
        (or string values) in ``neuron_id``, with moments missing (NaN) or null (NaN), and without
        ``neuron_id`` at all when ``layer_index``/``neuron_index`` (e.g. from the file's path) are
        given. If both are present and disagree, the file is rejected: it is in the wrong place.
        """
        if not isinstance(obj, Mapping):
            raise _fail(source, "", f"expected a NeuronRecord object, got {_type_name(obj)}")
        _check_dataclass_name(obj, "NeuronRecord", source, "")
        _check_keys(obj, _NEURON_RECORD_KEYS, {"most_positive_activation_records"}, source, "")

        layer, index = _parse_neuron_id(obj.get("neuron_id"), source, layer_index, neuron_index)

        def records(value: Any, path: str) -> list[ActivationRecord]:
            if not isinstance(value, list):
                raise _fail(source, path, f"expected a list of ActivationRecords, got {_type_name(value)}")
            return [
                ActivationRecord.from_json(item, source=source, field_path=f"{path}[{i}]", token_pair=token_pair)
                for i, item in enumerate(value)
            ]

        by_quantile_raw = obj.get("random_sample_by_quantile")
        by_quantile = None
        if by_quantile_raw is not None:
            if not isinstance(by_quantile_raw, list):
                raise _fail(source, "random_sample_by_quantile", f"expected a list of lists, got {_type_name(by_quantile_raw)}")
            by_quantile = [records(q, f"random_sample_by_quantile[{i}]") for i, q in enumerate(by_quantile_raw)]
        boundaries_raw = obj.get("quantile_boundaries")
        boundaries = None if boundaries_raw is None else _float_list(boundaries_raw, source, "quantile_boundaries")

        moments = {}
        for name in _MOMENTS:
            value = obj.get(name)
            if value is None:
                moments[name] = math.nan
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                moments[name] = float(value)
            else:
                raise _fail(source, name, f"expected a number or null, got {value!r}")

        return cls(
            layer_index=layer,
            neuron_index=index,
            most_positive_activation_records=records(
                obj["most_positive_activation_records"], "most_positive_activation_records"
            ),
            random_sample=records(obj.get("random_sample", []), "random_sample"),
            random_sample_by_quantile=by_quantile,
            quantile_boundaries=boundaries,
            **moments,
        )

    def validate(self, *, source: str = "<record>", token_pair: bool = False) -> None:
        groups: list[tuple[str, list[ActivationRecord]]] = [
            ("most_positive_activation_records", self.most_positive_activation_records),
            ("random_sample", self.random_sample),
        ]
        for qi, q in enumerate(self.random_sample_by_quantile or []):
            groups.append((f"random_sample_by_quantile[{qi}]", q))
        for name, group in groups:
            for i, record in enumerate(group):
                record.validate(source=source, field_path=f"{name}[{i}]", token_pair=token_pair)

    def to_json(self) -> dict[str, Any]:
        """TDB's exact layout (field order of its dataclasses; NaN moments as null, as orjson writes)."""
        return {
            "dataclass_name": "NeuronRecord",
            "neuron_id": {
                "dataclass_name": "NeuronId",
                "neuron_index": self.neuron_index,
                "layer_index": self.layer_index,
            },
            "random_sample": [r.to_json() for r in self.random_sample],
            "random_sample_by_quantile": (
                None
                if self.random_sample_by_quantile is None
                else [[r.to_json() for r in q] for q in self.random_sample_by_quantile]
            ),
            "quantile_boundaries": None if self.quantile_boundaries is None else list(self.quantile_boundaries),
            **{name: _finite_or_none(getattr(self, name)) for name in _MOMENTS},
            "most_positive_activation_records": [r.to_json() for r in self.most_positive_activation_records],
        }

    def to_bytes(self) -> bytes:
        """Compact UTF-8 JSON, as TDB's orjson writer produces."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>", **kwargs: Any) -> NeuronRecord:
        try:
            obj = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise _fail(source, "", f"not UTF-8 text ({error})") from None
        except json.JSONDecodeError as error:
            raise _fail(source, "", f"not valid JSON ({error})") from None
        return cls.from_json(obj, source=source, **kwargs)


def _parse_neuron_id(
    raw: Any, source: str, expected_layer: int | None, expected_index: int | None
) -> tuple[int, int]:
    if raw is None:
        if expected_layer is None or expected_index is None:
            raise _fail(source, "neuron_id", "missing, and no layer/index was given to fall back on")
        return expected_layer, expected_index
    if not isinstance(raw, Mapping):
        raise _fail(source, "neuron_id", f"expected a NeuronId object, got {_type_name(raw)}")
    _check_dataclass_name(raw, "NeuronId", source, "neuron_id")
    renamed = {{"idx": "neuron_index", "layer": "layer_index"}.get(k, k): v for k, v in raw.items() if k != "dataclass_name"}
    _check_keys(renamed, {"neuron_index", "layer_index"}, {"neuron_index", "layer_index"}, source, "neuron_id")
    layer = _int_value(renamed["layer_index"], source, "neuron_id.layer_index")
    index = _int_value(renamed["neuron_index"], source, "neuron_id.neuron_index")
    if expected_layer is not None and layer != expected_layer:
        raise _fail(source, "neuron_id.layer_index", f"is {layer} but the file is stored for layer {expected_layer}")
    if expected_index is not None and index != expected_index:
        raise _fail(source, "neuron_id.neuron_index", f"is {index} but the file is stored for index {expected_index}")
    return layer, index


# ---- token pairs ------------------------------------------------------------------------------


def _token_pair_window(num_tokens: int, num_activations: int) -> int | None:
    """The attended-to window m (m == num_tokens for a full triangle), or None if inconsistent."""
    if num_tokens == 0:
        return 0 if num_activations == 0 else None
    for window in range(num_tokens, 0, -1):
        if window * (window + 1) // 2 + (num_tokens - window) * window == num_activations:
            return window
    return None


def token_pair_rows(record: ActivationRecord) -> list[list[float]]:
    """Per query token i, its activations toward keys in row order (ragged: row i has min(i+1, m))."""
    n = len(record.tokens)
    window = _token_pair_window(n, len(record.activations))
    if window is None:
        raise InvalidInputError(
            f"{len(record.activations)} activations do not form token-pair rows for {n} tokens", field="activations"
        )
    rows, start = [], 0
    for i in range(n):
        length = min(i + 1, window)
        rows.append(list(record.activations[start : start + length]))
        start += length
    return rows


def token_pair_matrix(record: ActivationRecord) -> list[list[float]]:
    """The n x n (query, key) matrix of a full-triangle token-pair record, zeros above the diagonal."""
    n = len(record.tokens)
    if len(record.activations) != n * (n + 1) // 2:
        raise InvalidInputError(
            f"a token-pair record with {n} tokens needs {n * (n + 1) // 2} activations for a full lower "
            f"triangle, got {len(record.activations)}",
            field="activations",
        )
    return [row + [0.0] * (n - len(row)) for row in token_pair_rows(record)]


def flatten_token_pair_matrix(matrix: Sequence[Sequence[float]]) -> list[float]:
    """Inverse of :func:`token_pair_matrix`: the lower triangle (j <= i) in row order."""
    n = len(matrix)
    flat: list[float] = []
    for i, row in enumerate(matrix):
        if len(row) != n:
            raise InvalidInputError(f"matrix must be square: row {i} has {len(row)} entries, expected {n}", field="matrix")
        for j in range(i + 1, n):
            if row[j] != 0:
                raise InvalidInputError(
                    f"matrix entry ({i}, {j}) above the diagonal is {row[j]!r}; a causal token-pair matrix "
                    "must be zero there",
                    field="matrix",
                )
        flat.extend(float(x) for x in row[: i + 1])
    return flat


# ---- display ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisplayActivations:
    """Activations scaled to [0, 1] for colouring tokens."""

    scale: float
    """The max activation over the top records (values are divided by it); 0 if none is positive."""
    top: list[list[float]]
    random: list[list[float]]


def normalize_for_display(activations: Sequence[float], scale: float) -> list[float]:
    """``a / scale`` with negatives clamped to 0 and values above ``scale`` to 1; all 0 if scale <= 0."""
    if scale <= 0:
        return [0.0] * len(activations)
    return [min(max(a, 0.0) / scale, 1.0) for a in activations]


def display_activations(record: NeuronRecord) -> DisplayActivations:
    """Normalise a record's top and random excerpts as TDB does: by the max over the top records,
    negatives clamped to 0 (works for token-pair records too, value by value)."""
    scale = max(record.max_activation, 0.0)
    return DisplayActivations(
        scale=scale,
        top=[normalize_for_display(r.activations, scale) for r in record.most_positive_activation_records],
        random=[normalize_for_display(r.activations, scale) for r in record.random_sample],
    )


# ---- small parsing helpers --------------------------------------------------------------------


def _join_path(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_dataclass_name(obj: Mapping[str, Any], expected: str, source: str, path: str) -> None:
    name = obj.get("dataclass_name")
    if name is not None and name != expected:
        raise _fail(source, _join_path(path, "dataclass_name"), f"expected {expected!r}, got {name!r}")


def _check_keys(
    obj: Mapping[str, Any], allowed: set[str], required: set[str], source: str, path: str
) -> None:
    keys = set(obj) - {"dataclass_name"}
    unknown = sorted(keys - allowed)
    if unknown:
        raise _fail(source, path, f"unknown field(s) {unknown}; expected {sorted(allowed)}")
    missing = sorted(required - keys)
    if missing:
        raise _fail(source, _join_path(path, missing[0]), f"missing (required fields: {sorted(required)})")


def _float_list(value: Any, source: str, path: str) -> list[float]:
    if not isinstance(value, list):
        raise _fail(source, path, f"expected a list of numbers, got {_type_name(value)}")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise _fail(source, f"{path}[{i}]", f"expected a finite number, got {x!r}")
        out.append(float(x))
    return out


def _int_value(value: Any, source: str, path: str) -> int:
    if isinstance(value, bool):
        raise _fail(source, path, f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():  # some old files store the layer as a string
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _fail(source, path, f"expected an integer, got {value!r}")


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None
