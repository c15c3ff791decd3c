"""HTTP service (FastAPI + uvicorn): embeddings, classification, search, a minimal web page."""

from openclap.server.app import ServerSettings, create_app
from openclap.server.batching import Batcher
from openclap.server.protocol import uvicorn_config

__all__ = ["Batcher", "ServerSettings", "create_app", "uvicorn_config"]
