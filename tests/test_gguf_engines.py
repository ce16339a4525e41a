"""What both GGUF engines (llama_cpp, openvino) do alike through their shared base (`admap.generate.gguf_engine`),
each on the packaged SmolLM2 file: replies kept in the reply cache and reused, and a prompt too long for the
context failing alone. Each engine's own behaviour is in its own test module."""

import importlib.util
import json

import pytest

from admap.config import build
from admap.generate import PROXY_SYSTEM_PROMPT, with_system_prompt
from admap.generate.cache import ResponseCache
from admap.generate.options import GeneratorOptions
from admap.generate.runner import build_generator, generate_cached

ENGINES = {"llama_cpp": "llama_cpp", "openvino": "openvino_genai"}


def engine_param(name: str):
    installed = importlib.util.find_spec(ENGINES[name]) is not None
    return pytest.param(name, marks=pytest.mark.skipif(not installed, reason=f"{name}'s engine is not installed"))


engines = pytest.mark.parametrize("engine", [engine_param(name) for name in ENGINES])


@pytest.fixture(scope="module")
def hh_conversations(hh_rlhf_path):
    """Two real HH-RLHF prompts as `admap map` asks them."""
    from admap.load import load_preferences

    prompts = load_preferences(str(hh_rlhf_path), limit=2, progress=False).instructions["prompt_messages"]
    return [with_system_prompt(json.loads(messages), PROXY_SYSTEM_PROMPT) for messages in prompts]


@pytest.mark.slow
@engines
def test_replies_are_cached_and_reused(engine, hh_conversations, tmp_path):
    generator = build_generator(GeneratorOptions(generator=engine, max_new_tokens=32), progress=False)
    cache = ResponseCache(tmp_path)
    first, stats = generate_cached(generator, hh_conversations, cache=cache)
    assert (stats.requests, stats.cache_hits, stats.succeeded) == (2, 0, 2)
    again, stats = generate_cached(generator, hh_conversations, cache=cache)
    assert (stats.cache_hits, stats.tokens_out) == (2, 0)
    assert [r.text for r in again] == [r.text for r in first]


@pytest.mark.slow
@engines
def test_a_prompt_longer_than_the_context_fails_alone(engine):
    options = build(GeneratorOptions, {"generator": engine, "max_new_tokens": 8, engine: {"context_tokens": 64}})
    small = build_generator(options, progress=False)
    replies = small.generate([[{"role": "user", "content": "word " * 100}], [{"role": "user", "content": "Hi"}]])
    assert not replies[0].ok and "exceeds the 64-token context" in replies[0].error
    assert replies[1].ok
