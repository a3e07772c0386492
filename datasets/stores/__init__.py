"""Blob stores: one small interface over a local directory and Azure Blob Storage.

>>> store = open_store("https://openaipublic.blob.core.windows.net/neuron-explainer")  # doctest: +SKIP
>>> store.read("gpt2_small_data/collated-activations/0/0.json")  # doctest: +SKIP
"""

from .azure import AZURE_API_VERSION, AzureBlobStore
from .base import BlobData, BlobEntry, BlobStore
from .copy import CopyResult, copy_tree
from .errors import (
    BlobNotFoundError,
    InvalidBlobKeyError,
    InvalidStoreSpecError,
    StoreAccessDeniedError,
    StoreError,
    StoreUnavailableError,
)
from .keys import join_key, validate_key
from .local import LocalBlobStore
from .retry import RetryEvent, RetryPolicy
from .spec import CONNECTION_STRING_ENV, SPEC_FORMS, open_store

__all__ = [
    "AZURE_API_VERSION",
    "AzureBlobStore",
    "BlobData",
    "BlobEntry",
    "BlobNotFoundError",
    "BlobStore",
    "CONNECTION_STRING_ENV",
    "CopyResult",
    "InvalidBlobKeyError",
    "InvalidStoreSpecError",
    "LocalBlobStore",
    "RetryEvent",
    "RetryPolicy",
    "SPEC_FORMS",
    "StoreAccessDeniedError",
    "StoreError",
    "StoreUnavailableError",
    "copy_tree",
    "join_key",
    "open_store",
    "validate_key",
]
