import os
import shutil
from pathlib import Path

import pytest

# Tests never reach a hub: the default models ship as packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Real data the tests read, kept in the repository with its licence (tests/data/*/LICENSE).
TEST_DATA = Path(__file__).parent / "data"
# The benchmarks the experiments evaluate on, shipped with admap (admap/evaluation_sets/*/LICENSE).
BENCHMARK_DATA = Path(__file__).resolve().parents[1] / "admap" / "evaluation_sets"


@pytest.fixture(scope="session")
def hh_rlhf_path() -> Path:
    """Anthropic HH-RLHF, harmless-base test split (2,312 rows, MIT)."""
    return TEST_DATA / "hh_rlhf" / "harmless-base-test.jsonl.gz"


@pytest.fixture(scope="session")
def mt_bench_dir() -> Path:
    return BENCHMARK_DATA / "mt_bench"


@pytest.fixture(scope="session")
def evol_path() -> Path:
    return BENCHMARK_DATA / "evol_instruct" / "WizardLM_testset.jsonl"


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


def chromium_path() -> str | None:
    """The Chromium the browser tests drive: $ADMAP_CHROMIUM, else Debian's."""
    for candidate in (os.environ.get("ADMAP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def playwright():
    """Playwright and the Chromium to launch; one per module (the sync API cannot nest)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright: pip install playwright (setup.sh)")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found (/usr/bin/chromium or $ADMAP_CHROMIUM); scripts/setup.sh installs it")
    with sync_api.sync_playwright() as playwright:
        yield playwright, path


@pytest.fixture(scope="module")
def browser(playwright):
    """Headless Chromium with the project's flags (scripts/chromium.py), one per module."""
    from scripts.chromium import CHROMIUM_ARGS

    driver, path = playwright
    browser = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
