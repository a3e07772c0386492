"""TDB collated-activation records: the public JSON layout, read through local and Azurite stores."""

from __future__ import annotations

import json
import math
import uuid

import numpy as np
import pytest

from mechscope.datasets.stores import AzureBlobStore, BlobNotFoundError, LocalBlobStore, RetryPolicy, open_store
from mechscope.datasets.tdb_datasets import (
    GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR,
    GPT2_SMALL_MLP_NEURONS,
    PUBLIC_TDB_DATASETS,
    TdbDataset,
    public_store_spec,
)
from mechscope.datasets.tdb_records import (
    ActivationRecord,
    NeuronRecord,
    RecordFormatError,
    display_activations,
    flatten_token_pair_matrix,
    normalize_for_display,
    token_pair_matrix,
    token_pair_rows,
)
from mechscope.inference.errors import InvalidInputError
from tests.support.azurite import Azurite, module_azurite  # noqa: F401 (module_azurite is the `azurite` fixture)

# ---- files in the exact public shapes, written out by hand -------------------------------------

# Current TDB file (orjson output of its dataclasses: dataclass_name tags, NaN moments as null).
MLP_NEURON_3_17 = {
    "dataclass_name": "NeuronRecord",
    "neuron_id": {"dataclass_name": "NeuronId", "neuron_index": 17, "layer_index": 3},
    "random_sample": [
        {"dataclass_name": "ActivationRecord", "activations": [0.1, -0.2], "tokens": [" random", " text"]},
    ],
    "random_sample_by_quantile": [
        [{"dataclass_name": "ActivationRecord", "activations": [0.0], "tokens": ["q0"]}],
        [{"dataclass_name": "ActivationRecord", "activations": [2.5], "tokens": ["q1"]}],
    ],
    "quantile_boundaries": [0.5, 1.5],
    "mean": 0.25,
    "variance": 1.5,
    "skewness": None,
    "kurtosis": 3.0,
    "most_positive_activation_records": [
        {"dataclass_name": "ActivationRecord", "activations": [0.0, 4.0, -1.0], "tokens": ["The", " cat", " sat"]},
        {"dataclass_name": "ActivationRecord", "activations": [2.0, 1.0, 0.5], "tokens": ["A", " dog", "\u00e9"]},
    ],
}

# Older neuron-explainer file: no dataclass_name anywhere, `layer`/`idx` ids, layer as a string,
# tokens-before-activations order, no quantile fields, no moments.
OLD_NEURON_3_18 = {
    "neuron_id": {"layer": "3", "idx": 18},
    "most_positive_activation_records": [{"tokens": ["x", "y"], "activations": [1, 3]}],
    "random_sample": [{"tokens": ["z"], "activations": [0.5]}],
}

# Attention head 5 of layer 0, by token pair: per excerpt the flattened lower triangle, row order.
HEAD_0_5 = {
    "dataclass_name": "NeuronRecord",
    "neuron_id": {"dataclass_name": "NeuronId", "neuron_index": 5, "layer_index": 0},
    "random_sample": [],
    "random_sample_by_quantile": None,
    "quantile_boundaries": None,
    "mean": None,
    "variance": None,
    "skewness": None,
    "kurtosis": None,
    "most_positive_activation_records": [
        {
            "dataclass_name": "ActivationRecord",
            # (0,0) | (1,0) (1,1) | (2,0) (2,1) (2,2)
            "activations": [0.5, 1.0, 2.0, 3.0, 0.25, 6.0],
            "tokens": ["When", " Mary", " and"],
        }
    ],
}

# A file with no neuron_id at all: its id comes from its path.
NO_ID_NEURON_4_0 = {"most_positive_activation_records": [{"tokens": ["a"], "activations": [1.0]}]}

PUBLIC_FILES = {
    f"{GPT2_SMALL_MLP_NEURONS}/3/17.json": MLP_NEURON_3_17,
    f"{GPT2_SMALL_MLP_NEURONS}/3/18.json": OLD_NEURON_3_18,
    f"{GPT2_SMALL_MLP_NEURONS}/4/0.json": NO_ID_NEURON_4_0,
    f"{GPT2_SMALL_MLP_NEURONS}/10/2.json": NO_ID_NEURON_4_0 | {"neuron_id": {"layer_index": 10, "neuron_index": 2}},
    f"{GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR}/0/5.json": HEAD_0_5,
}




def _fill(store) -> None:
    for key, obj in PUBLIC_FILES.items():
        store.write(key, json.dumps(obj).encode())  # json.dumps: a writer independent of ours


@pytest.fixture(params=["local", "azurite-public"])
def public_store(request, tmp_path):
    """The sample dataset on a local dir, or in a public Azurite container read anonymously."""
    if request.param == "local":
        store = LocalBlobStore(tmp_path / "neuron-explainer")
        _fill(store)
        return store
    azurite = request.getfixturevalue("azurite")
    container = f"ne{uuid.uuid4().hex[:12]}"
    owner = AzureBlobStore.from_connection_string(azurite.connection_string, container)
    owner.container_client.create_container(public_access="container")
    _fill(owner)
    return open_store(f"{azurite.account_url}/{container}", retry=RetryPolicy(attempts=2, initial_delay_s=0.01))


def test_reads_current_tdb_file(public_store):
    record = TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS).read_record(3, 17)
    assert (record.layer_index, record.neuron_index) == (3, 17)
    top = record.most_positive_activation_records
    assert [r.tokens for r in top] == [["The", " cat", " sat"], ["A", " dog", "\u00e9"]]
    assert [r.activations for r in top] == [[0.0, 4.0, -1.0], [2.0, 1.0, 0.5]]
    assert record.random_sample == [ActivationRecord([" random", " text"], [0.1, -0.2])]
    assert record.random_sample_by_quantile == [[ActivationRecord(["q0"], [0.0])], [ActivationRecord(["q1"], [2.5])]]
    assert record.quantile_boundaries == [0.5, 1.5]
    assert (record.mean, record.variance, record.kurtosis) == (0.25, 1.5, 3.0)
    assert math.isnan(record.skewness)
    assert record.max_activation == 4.0


def test_reads_old_neuron_explainer_file(public_store):
    record = TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS).read_record(3, 18)
    assert (record.layer_index, record.neuron_index) == (3, 18)
    assert record.most_positive_activation_records == [ActivationRecord(["x", "y"], [1.0, 3.0])]
    assert record.random_sample == [ActivationRecord(["z"], [0.5])]
    assert record.random_sample_by_quantile is None and record.quantile_boundaries is None
    assert all(math.isnan(getattr(record, m)) for m in ("mean", "variance", "skewness", "kurtosis"))


def test_file_without_neuron_id_takes_it_from_its_path(public_store):
    record = TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS).read_record(4, 0)
    assert (record.layer_index, record.neuron_index) == (4, 0)
    with pytest.raises(RecordFormatError, match="neuron_id"):
        NeuronRecord.from_json(NO_ID_NEURON_4_0)


def test_reads_token_pair_head_record(public_store):
    dataset = TdbDataset(public_store, GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR)
    assert dataset.token_pair
    record = dataset.read_record(0, 5)
    excerpt = record.most_positive_activation_records[0]
    assert token_pair_matrix(excerpt) == [[0.5, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, 0.25, 6.0]]
    # As a plain (per-token) dataset the same file is malformed: 6 activations for 3 tokens.
    with pytest.raises(RecordFormatError, match="most_positive_activation_records\\[0\\].activations"):
        TdbDataset(public_store, GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR, token_pair=False).read_record(0, 5)


def test_listing_layers_and_indices(public_store):
    dataset = TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS)
    assert dataset.list_layers() == [3, 4, 10]
    assert dataset.list_indices(3) == [17, 18]
    assert dataset.list_indices(1) == []
    assert dataset.has_record(10, 2) and not dataset.has_record(10, 3)


def test_missing_record_names_store_and_key(public_store):
    with pytest.raises(BlobNotFoundError) as info:
        TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS).read_record(11, 3071)
    assert f"{GPT2_SMALL_MLP_NEURONS}/11/3071.json" in str(info.value)
    assert public_store.description in str(info.value)


def test_export_round_trip_gives_tdb_layout(public_store, tmp_path):
    source = TdbDataset(public_store, GPT2_SMALL_MLP_NEURONS)
    export = TdbDataset(LocalBlobStore(tmp_path / "export"), "my_model/collated-activations")
    for layer, index in [(3, 17), (3, 18)]:
        key = export.write_record(source.read_record(layer, index))
        assert key == f"my_model/collated-activations/{layer}/{index}.json"
    written = json.loads(export.store.read("my_model/collated-activations/3/17.json"))
    assert written == MLP_NEURON_3_17  # byte-for-byte the public shape, tags and null moments included
    assert list(written) == list(MLP_NEURON_3_17)  # and TDB's field order
    old = json.loads(export.store.read("my_model/collated-activations/3/18.json"))
    assert old["dataclass_name"] == "NeuronRecord"
    assert old["neuron_id"] == {"dataclass_name": "NeuronId", "neuron_index": 18, "layer_index": 3}
    assert old["most_positive_activation_records"] == [
        {"dataclass_name": "ActivationRecord", "activations": [1.0, 3.0], "tokens": ["x", "y"]}
    ]
    assert old["mean"] is None and old["random_sample_by_quantile"] is None
    assert export.read_record(3, 17).to_json() == source.read_record(3, 17).to_json()
    head = TdbDataset(public_store, GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR).read_record(0, 5)
    assert json.loads(head.to_bytes()) == HEAD_0_5


def test_export_rejects_invalid_record(tmp_path):
    dataset = TdbDataset(LocalBlobStore(tmp_path), "d")
    bad = NeuronRecord(0, 1, [ActivationRecord(["a", "b"], [1.0])])
    with pytest.raises(RecordFormatError, match="most_positive_activation_records\\[0\\].activations"):
        dataset.write_record(bad)
    assert list(dataset.store.list()) == []


# ---- malformed files ---------------------------------------------------------------------------


def _with(**changes):
    obj = json.loads(json.dumps(MLP_NEURON_3_17))
    for path, value in changes.items():
        target = obj
        parts = path.split("__")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    "obj, field, message",
    [
        (_with(most_positive_activation_records__1__activations=[1.0]), "most_positive_activation_records[1].activations", "1 activations for 3 tokens"),
        (_with(random_sample__0__tokens=["a", 3]), "random_sample[0].tokens", "list of strings"),
        (_with(random_sample_by_quantile__1__0__activations=[None]), "random_sample_by_quantile[1][0].activations[0]", "finite number"),
        (_with(most_positive_activation_records=_DELETE), "most_positive_activation_records", "missing"),
        (_with(most_positive_activation_records={"a": 1}), "most_positive_activation_records", "expected a list"),
        (_with(mean="high"), "mean", "number or null"),
        (_with(dataclass_name="ScoredExplanation"), "dataclass_name", "expected 'NeuronRecord'"),
        (_with(neuron_id__neuron_index="x"), "neuron_id.neuron_index", "integer"),
        (_with(neuron_id__layer_index=_DELETE), "neuron_id.layer_index", "missing"),
        (_with(explanation="extra"), None, "unknown field(s) ['explanation']"),
        ([1, 2], None, "expected a NeuronRecord object"),
    ],
)
def test_malformed_records_name_the_field(obj, field, message):
    with pytest.raises(RecordFormatError) as info:
        NeuronRecord.from_json(obj, source="gpt2/3/17.json")
    assert info.value.field == field
    assert message in str(info.value) and str(info.value).startswith("gpt2/3/17.json:")
    if field:
        assert f"'{field}'" in str(info.value)


def test_token_pair_length_is_validated():
    obj = json.loads(json.dumps(HEAD_0_5))
    # 3 tokens: 6 for the full triangle (or 3 / 5 for TDB's banded windows m=1 / m=2); 4 fits nothing.
    obj["most_positive_activation_records"][0]["activations"] = [1.0] * 4
    with pytest.raises(RecordFormatError, match="needs n\\(n\\+1\\)/2 = 6 activations .* got 4") as info:
        NeuronRecord.from_json(obj, source="head.json", token_pair=True)
    assert info.value.field == "most_positive_activation_records[0].activations"


def test_bad_files_in_a_store_name_the_file(tmp_path):
    store = LocalBlobStore(tmp_path)
    dataset = TdbDataset(store, "ds")
    store.write("ds/0/1.json", b"{not json")
    store.write("ds/0/2.json", b"\xff\xfe")
    store.write("ds/0/3.json", json.dumps(MLP_NEURON_3_17).encode())  # says layer 3, neuron 17
    with pytest.raises(RecordFormatError, match=r"ds/0/1\.json: the top level: not valid JSON"):
        dataset.read_record(0, 1)
    with pytest.raises(RecordFormatError, match=r"ds/0/2\.json: .*not UTF-8"):
        dataset.read_record(0, 2)
    with pytest.raises(RecordFormatError, match=r"ds/0/3\.json: field 'neuron_id.layer_index': is 3 but the file is stored for layer 0"):
        dataset.read_record(0, 3)
    with pytest.raises(InvalidInputError, match="layer"):
        dataset.read_record(-1, 0)


# ---- token-pair helpers, against numpy as the reference -----------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_token_pair_flatten_matches_numpy_lower_triangle(n):
    rng = np.random.default_rng(n)
    matrix = np.tril(rng.normal(size=(n, n)))
    rows, cols = np.tril_indices(n)  # row-major order: (0,0), (1,0), (1,1), (2,0), ...
    flat = matrix[rows, cols].tolist()
    record = ActivationRecord([f"t{i}" for i in range(n)], flat)
    assert np.array_equal(np.array(token_pair_matrix(record)), matrix)
    assert flatten_token_pair_matrix(matrix.tolist()) == flat


def test_flatten_rejects_non_causal_or_non_square():
    with pytest.raises(InvalidInputError, match="\\(0, 1\\) above the diagonal"):
        flatten_token_pair_matrix([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(InvalidInputError, match="square"):
        flatten_token_pair_matrix([[1.0], [2.0, 3.0]])


def test_banded_token_pair_records_give_ragged_rows():
    # TDB also reads records whose queries see at most m=2 keys: row lengths 1, 2, 2, 2.
    record = ActivationRecord(["a", "b", "c", "d"], [1, 2, 3, 4, 5, 6, 7])
    record.validate(token_pair=True)
    assert token_pair_rows(record) == [[1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(InvalidInputError, match="full lower triangle"):
        token_pair_matrix(record)


# ---- display normalisation -------------------------------------------------------------------


def test_display_normalises_by_top_max_and_clamps():
    record = NeuronRecord.from_json(MLP_NEURON_3_17)
    shown = display_activations(record)
    assert shown.scale == 4.0
    assert shown.top == [[0.0, 1.0, 0.0], [0.5, 0.25, 0.125]]
    assert shown.random == [[0.025, 0.0]]
    assert normalize_for_display([5.0, -1.0, 2.0], 4.0) == [1.0, 0.0, 0.5]
    negative = NeuronRecord(0, 0, [ActivationRecord(["a", "b"], [-1.0, -2.0])])
    assert display_activations(negative).top == [[0.0, 0.0]] and display_activations(negative).scale == 0.0


# ---- public dataset constants ------------------------------------------------------------------


def test_public_dataset_constants():
    assert public_store_spec() == "https://openaipublic.blob.core.windows.net/neuron-explainer"
    store = open_store(public_store_spec())
    assert store.description == "Azure container https://openaipublic.blob.core.windows.net/neuron-explainer"
    paths = {d.path: d for d in PUBLIC_TDB_DATASETS}
    assert paths["gpt2_small_data/collated-activations"].scalar_type == "mlp_post_act"
    assert paths["gpt2_small/attn_write_norm/collated-activations-by-token-pair"].token_pair
    assert not paths["gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations"].token_pair
    assert {
        "gpt2_small/autoencoder_latent/mlp_post_act_v1/collated-activations",
        "gpt2_small/autoencoder_latent/resid_delta_mlp_v4/collated-activations",
        "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations-by-token-pair",
    } <= set(paths)
    dataset = TdbDataset(store, GPT2_SMALL_MLP_NEURONS)
    assert dataset.record_key(11, 3071) == "gpt2_small_data/collated-activations/11/3071.json"
