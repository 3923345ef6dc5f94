"""Typed wire and domain structs shared by every API family."""

from sdrest.schemas.job import (
    FINISHED,
    ImageRef,
    Job,
    JobError,
    JobKind,
    JobResult,
    JobStatus,
    Progress,
    UpscaleRequest,
)
from sdrest.schemas.request import (
    OUTPUT_FORMATS,
    SAMPLE_METHODS,
    SCHEDULERS,
    GuidanceParams,
    ImgGenRequest,
    LoraSpec,
    SampleParams,
    SlgParams,
    VaeTilingParams,
)

__all__ = [
    "FINISHED",
    "OUTPUT_FORMATS",
    "SAMPLE_METHODS",
    "SCHEDULERS",
    "GuidanceParams",
    "ImageRef",
    "ImgGenRequest",
    "Job",
    "JobError",
    "JobKind",
    "JobResult",
    "JobStatus",
    "LoraSpec",
    "Progress",
    "SampleParams",
    "SlgParams",
    "UpscaleRequest",
    "VaeTilingParams",
]
