import os
from pathlib import Path

import pytest

# Tests never reach a hub: the default models ship as packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def hh_rlhf_path() -> Path:
    path = SHARED_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not present (the shared data folder lies beside the checkout)")
    return path


@pytest.fixture(scope="session")
def minilm():
    """The offline default embedding model, loaded once for the session."""
    from admap.embed import load_encoder

    return load_encoder("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture
def chat_server():
    """A chat-completions server on loopback (tests/chat_server.py), stopped after the test."""
    from chat_server import ChatServer

    with ChatServer() as server:
        yield server
