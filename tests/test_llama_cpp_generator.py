"""The llama_cpp generator: its options through the CLI and YAML, and (slow) real replies from the packaged
SmolLM2 GGUF file through the registry, greedy and reproducible, with its report (what both GGUF engines
do alike: tests/test_gguf_engines.py)."""

import importlib.util
import json

import pytest

from admap.cli import build_parser
from admap.commands.proxy import ProxyConfig
from admap.config import build, from_arguments, to_dict
from admap.generate import PROXY_SYSTEM_PROMPT, with_system_prompt
from admap.generate.gguf_engine import gguf_path
from admap.generate.llama_cpp_generator import LlamaCppGenerator, LlamaCppOptions
from admap.generate.options import GeneratorOptions
from admap.generate.runner import build_generator, generate_cached
from admap.models import SMOLLM2_GGUF_FILE

needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="llama-cpp-python is not installed (pip install 'admap[llama_cpp]')",
)


def test_its_options_are_flags_and_yaml_under_its_name():
    namespace = build_parser().parse_args(["proxy", "demo", "--generator", "llama_cpp", "--llama-cpp-threads", "1"])
    config = from_arguments(ProxyConfig, namespace)
    assert config.generation.generator_options["llama_cpp"] == LlamaCppOptions(threads=1)
    # Recorded under the generator's name, as `build` reads it back.
    assert to_dict(config.generation)["llama_cpp"] == {"threads": 1, "context_tokens": 8192}
    assert build(GeneratorOptions, to_dict(config.generation)) == config.generation
    # Another generator records no llama_cpp section, and "none" names no generator at all.
    assert "llama_cpp" not in to_dict(GeneratorOptions())
    assert "llama_cpp" not in to_dict(GeneratorOptions(generator="none"))


def test_a_model_that_is_no_gguf_file_is_refused(tmp_path):
    assert gguf_path("smollm2", "llama_cpp").endswith(SMOLLM2_GGUF_FILE)
    with pytest.raises(ValueError, match="'llama_cpp' reads a local .gguf file"):
        LlamaCppGenerator(model="HuggingFaceTB/SmolLM2-360M-Instruct").gguf_file()
    with pytest.raises(ValueError, match="threads must be >= 1"):
        LlamaCppGenerator(options=LlamaCppOptions(threads=0))


@pytest.fixture(scope="module")
def hh_conversations(hh_rlhf_path):
    """Three real HH-RLHF prompts as `admap map` asks them, and a question with a known answer."""
    from admap.load import load_preferences

    prompts = load_preferences(str(hh_rlhf_path), limit=3, progress=False).instructions["prompt_messages"]
    conversations = [json.loads(messages) for messages in prompts]
    conversations.append([{"role": "user", "content": "What is the capital of France?"}])
    return [with_system_prompt(c, PROXY_SYSTEM_PROMPT) for c in conversations]


@pytest.fixture(scope="module")
def generator():
    options = GeneratorOptions(generator="llama_cpp", max_new_tokens=32)
    return build_generator(options, progress=False)


@pytest.mark.slow
@needs_llama_cpp
def test_greedy_replies_from_the_packaged_gguf_are_reproducible(generator, hh_conversations):
    replies = generator.generate(hh_conversations)
    assert all(r.ok and r.tokens_in > 20 and 0 < r.tokens_out <= 32 for r in replies)
    assert "paris" in replies[-1].text.lower()
    assert generator.deterministic
    # The same replies in another order: no prompt's reply depends on the one decoded before it.
    again = generator.generate(hh_conversations[::-1])
    assert [r.text for r in again[::-1]] == [r.text for r in replies]


@pytest.mark.slow
@needs_llama_cpp
def test_another_max_new_tokens_is_another_request(generator, hh_conversations):
    other = LlamaCppGenerator(max_new_tokens=8, progress=False)
    assert generate_cached(other, hh_conversations[:1], cache=None)[0][0].tokens_out <= 8
    assert other.identity() != generator.identity()


@pytest.mark.slow
@needs_llama_cpp
def test_label_and_report(generator):
    assert GeneratorOptions(generator="llama_cpp").label == "llama_cpp:SmolLM2-135M-Instruct"
    report = generator.report()
    assert report["gguf_file"] == SMOLLM2_GGUF_FILE
    assert report["threads"] >= 1 and report["context_tokens"] == 8192
    assert report["llama_cpp_python"]
