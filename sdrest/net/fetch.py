"""Fetch an image from a URL without ever reaching loopback, private, link-local or metadata
addresses (checked after DNS resolution and again on every redirect hop).

Being built: the signature below is the contract the families code against.
"""

from __future__ import annotations

from sdrest.errors import NotImplementedFeatureError
from sdrest.settings import FetchSettings


async def fetch_image_bytes(url: str, settings: FetchSettings, *, max_bytes: int) -> bytes:
    """The body of ``url`` (http/https only), at most ``max_bytes``; 4xx SdrestErrors otherwise."""
    raise NotImplementedFeatureError("fetching images from URLs is not available yet")
