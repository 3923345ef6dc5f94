"""The model registry: files in the models folder, their types, architectures and hashes."""

from sdrest.models.detect import Detection, Rule, detect
from sdrest.models.hashing import HashCache, HashWorker, sha256_file, short_hash
from sdrest.models.headers import FileHeader, HeaderError, TensorInfo, read_header
from sdrest.models.registry import (
    FOLDER_TYPES,
    MODEL_SUFFIXES,
    ModelEntry,
    ModelPreset,
    ModelRegistry,
    PathNotAllowedError,
    ScanReport,
    UnknownModelError,
)

__all__ = [
    "FOLDER_TYPES",
    "MODEL_SUFFIXES",
    "Detection",
    "FileHeader",
    "HashCache",
    "HashWorker",
    "HeaderError",
    "ModelEntry",
    "ModelPreset",
    "ModelRegistry",
    "PathNotAllowedError",
    "Rule",
    "ScanReport",
    "TensorInfo",
    "UnknownModelError",
    "detect",
    "read_header",
    "sha256_file",
    "short_hash",
]
