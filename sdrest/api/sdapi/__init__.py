"""The AUTOMATIC1111 family ``/sdapi/v1``."""
