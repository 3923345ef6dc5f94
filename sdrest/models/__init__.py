"""The model registry: files in the models folder, their types, architectures and hashes."""

from sdrest.errors import PathNotAllowedError
from sdrest.models.detect import Detection, Rule, detect
from sdrest.models.hashing import HashCache, HashWorker, sha256_file, short_hash
from sdrest.models.headers import FileHeader, HeaderError, TensorInfo, read_header
from sdrest.models.paths import MODEL_SUFFIXES
from sdrest.models.registry import (
    FOLDER_TYPES,
    GENERATION_TYPES,
    PRESET_FIELDS,
    ModelEntry,
    ModelRegistry,
    ScanReport,
    UnknownModelError,
)
from sdrest.schemas.preset import ModelPreset

__all__ = [
    "FOLDER_TYPES",
    "GENERATION_TYPES",
    "MODEL_SUFFIXES",
    "PRESET_FIELDS",
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
