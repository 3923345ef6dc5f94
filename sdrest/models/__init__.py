"""The model registry: files in the models folder, their types, architectures and hashes."""

from sdrest.models.detect import Detection, detect
from sdrest.models.hashing import HashCache, short_hash
from sdrest.models.headers import FileHeader, HeaderError, TensorInfo, read_header
from sdrest.models.registry import (
    ModelEntry,
    ModelPreset,
    ModelRegistry,
    PathNotAllowedError,
    ScanReport,
    UnknownModelError,
)

__all__ = [
    "Detection",
    "FileHeader",
    "HashCache",
    "HeaderError",
    "ModelEntry",
    "ModelPreset",
    "ModelRegistry",
    "PathNotAllowedError",
    "ScanReport",
    "TensorInfo",
    "UnknownModelError",
    "detect",
    "read_header",
    "short_hash",
]
