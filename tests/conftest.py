import os
from pathlib import Path

import pytest

# Tests never reach a hub: the default models ship as packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Real data the tests read, kept in the repository with its licence (tests/data/*/LICENSE).
TEST_DATA = Path(__file__).parent / "data"


def shared_data(relative: str) -> Path:
    """A file or folder of ../shared/data, or a skip where the checkout has none beside it."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not present (the shared data folder lies beside the checkout)")
    return path


@pytest.fixture(scope="session")
def hh_rlhf_path() -> Path:
    """Anthropic HH-RLHF, harmless-base test split (2,312 rows, MIT)."""
    return TEST_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"


@pytest.fixture(scope="session")
def mt_bench_dir() -> Path:
    return shared_data("mt_bench/question.jsonl").parent


@pytest.fixture(scope="session")
def evol_path() -> Path:
    return shared_data("evol_instruct/WizardLM_testset.jsonl")


@pytest.fixture(scope="session")
def minilm():
    """The offline default embedding model, loaded once for the session."""
    from admap.encoders import load_encoder

    return load_encoder("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture
def chat_server():
    """A chat-completions server on loopback (benchmarks/chat_server.py), stopped after the test."""
    from benchmarks.chat_server import ChatServer

    with ChatServer() as server:
        yield server
