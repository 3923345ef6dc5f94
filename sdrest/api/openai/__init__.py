"""The OpenAI images family ``/v1``."""
