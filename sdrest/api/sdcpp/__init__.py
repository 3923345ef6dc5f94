"""The native async API of stable-diffusion.cpp: ``/sdcpp/v1``."""
