"""HTTP API families: each one a thin translation onto the one service."""
