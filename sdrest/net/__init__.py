"""Outbound HTTP: fetching images from URLs without reaching private networks."""
