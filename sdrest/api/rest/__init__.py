"""The stable-diffusion.cpp-rest family ``/api`` (and the ``/ws`` WebSocket)."""
