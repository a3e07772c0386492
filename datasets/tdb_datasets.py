"""TDB's collated-activation datasets on a blob store: one NeuronRecord JSON file per node at
``{dataset_path}/{layer}/{index}.json`` (see :mod:`.tdb_records`), and where OpenAI's public ones
live (account ``openaipublic``, container ``neuron-explainer``)."""

from __future__ import annotations

from dataclasses import dataclass

from mechscope.inference.errors import InvalidInputError

from .stores import BlobStore, join_key, validate_key
from .tdb_records import NeuronRecord

# ---- public datasets --------------------------------------------------------------------------

PUBLIC_ACCOUNT = "openaipublic"
PUBLIC_CONTAINER = "neuron-explainer"
PUBLIC_ACCOUNT_URL = f"https://{PUBLIC_ACCOUNT}.blob.core.windows.net"

GPT2_XL_MLP_NEURONS = "data/collated-activations"
GPT2_SMALL_MLP_NEURONS = "gpt2_small_data/collated-activations"
GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR = "gpt2_small/attn_write_norm/collated-activations-by-token-pair"
GPT2_SMALL_AE_MLP_POST_ACT_V1 = "gpt2_small/autoencoder_latent/mlp_post_act_v1/collated-activations"
GPT2_SMALL_AE_RESID_DELTA_MLP_V1 = "gpt2_small/autoencoder_latent/resid_delta_mlp_v1/collated-activations"
GPT2_SMALL_AE_MLP_POST_ACT_V4 = "gpt2_small/autoencoder_latent/mlp_post_act_v4/collated-activations"
GPT2_SMALL_AE_RESID_DELTA_MLP_V4 = "gpt2_small/autoencoder_latent/resid_delta_mlp_v4/collated-activations"
GPT2_SMALL_AE_RESID_DELTA_ATTN_V4 = "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations"
GPT2_SMALL_AE_RESID_DELTA_ATTN_V4_BY_TOKEN_PAIR = (
    "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations-by-token-pair"
)

TOKEN_PAIR_MARKER = "by-token-pair"


@dataclass(frozen=True)
class PublicTdbDataset:
    """A collated-activation dataset OpenAI publishes in ``openaipublic/neuron-explainer``."""

    short_name: str
    """TDB's short name, e.g. 'gpt2-small'."""
    scalar_type: str
    """TDB's derived scalar type, e.g. 'mlp_post_act'."""
    path: str
    """Dataset path inside the container."""

    @property
    def token_pair(self) -> bool:
        return TOKEN_PAIR_MARKER in self.path


PUBLIC_TDB_DATASETS: tuple[PublicTdbDataset, ...] = (
    PublicTdbDataset("gpt2-xl", "mlp_post_act", GPT2_XL_MLP_NEURONS),
    PublicTdbDataset("gpt2-small", "mlp_post_act", GPT2_SMALL_MLP_NEURONS),
    PublicTdbDataset("gpt2-small", "attn_write_norm", GPT2_SMALL_ATTN_HEADS_BY_TOKEN_PAIR),
    PublicTdbDataset("gpt2-small_ae-mlp-post-act-v1", "mlp_autoencoder_latent", GPT2_SMALL_AE_MLP_POST_ACT_V1),
    PublicTdbDataset("gpt2-small_ae-resid-delta-mlp-v1", "mlp_autoencoder_latent", GPT2_SMALL_AE_RESID_DELTA_MLP_V1),
    PublicTdbDataset("gpt2-small_ae-mlp-post-act-v4", "mlp_autoencoder_latent", GPT2_SMALL_AE_MLP_POST_ACT_V4),
    PublicTdbDataset("gpt2-small_ae-resid-delta-mlp-v4", "mlp_autoencoder_latent", GPT2_SMALL_AE_RESID_DELTA_MLP_V4),
    PublicTdbDataset(
        "gpt2-small_ae-resid-delta-attn-v4", "attention_autoencoder_latent", GPT2_SMALL_AE_RESID_DELTA_ATTN_V4
    ),
    PublicTdbDataset(
        "gpt2-small_ae-resid-delta-attn-v4",
        "flattened_attn_write_to_latent_summed_over_heads",
        GPT2_SMALL_AE_RESID_DELTA_ATTN_V4_BY_TOKEN_PAIR,
    ),
)


def public_store_spec(account: str = PUBLIC_ACCOUNT, container: str = PUBLIC_CONTAINER) -> str:
    """The :func:`~mechscope.datasets.stores.open_store` spec of OpenAI's public TDB container."""
    return f"https://{account}.blob.core.windows.net/{container}"


# ---- datasets on a store ----------------------------------------------------------------------


class TdbDataset:
    """A collated-activation dataset at ``dataset_path`` on a blob store.

    ``token_pair`` defaults to whether the path contains 'by-token-pair' (TDB's naming).
    """

    def __init__(self, store: BlobStore, dataset_path: str, *, token_pair: bool | None = None):
        dataset_path = dataset_path.strip("/")
        if dataset_path:
            validate_key(dataset_path)
        self.store = store
        self.dataset_path = dataset_path
        self.token_pair = TOKEN_PAIR_MARKER in dataset_path if token_pair is None else token_pair

    @property
    def description(self) -> str:
        return f"dataset '{self.dataset_path}' in {self.store.description}"

    def record_key(self, layer: int, index: int) -> str:
        for name, value in (("layer", layer), ("index", index)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}", field=name)
        return join_key(self.dataset_path, str(layer), f"{index}.json")

    def has_record(self, layer: int, index: int) -> bool:
        return self.store.exists(self.record_key(layer, index))

    def read_record(self, layer: int, index: int) -> NeuronRecord:
        """Raises BlobNotFoundError (store unreachable: StoreUnavailableError; bad file: RecordFormatError)."""
        key = self.record_key(layer, index)
        data = self.store.read(key)
        return NeuronRecord.from_bytes(
            data,
            source=f"{self.store.description}: {key}",
            token_pair=self.token_pair,
            layer_index=layer,
            neuron_index=index,
        )

    def write_record(self, record: NeuronRecord) -> str:
        """Validate and store ``record`` at its layer/index; returns the key written."""
        key = self.record_key(record.layer_index, record.neuron_index)
        record.validate(source=f"record for {key}", token_pair=self.token_pair)
        self.store.write(key, record.to_bytes())
        return key

    def list_layers(self) -> list[int]:
        """Layers that hold at least one record, ascending."""
        return sorted({layer for layer, _ in self._records()})

    def list_indices(self, layer: int) -> list[int]:
        """Indices with a record in ``layer``, ascending."""
        return sorted(index for _, index in self._records(layer))

    def _records(self, layer: int | None = None) -> list[tuple[int, int]]:
        base = self.dataset_path + "/" if self.dataset_path else ""
        prefix = base if layer is None else f"{base}{layer}/"
        found = []
        for key in self.store.list(prefix):
            parts = key[len(base) :].split("/")
            if len(parts) == 2 and parts[0].isdigit() and parts[1].endswith(".json") and parts[1][:-5].isdigit():
                found.append((int(parts[0]), int(parts[1][:-5])))
        return found
