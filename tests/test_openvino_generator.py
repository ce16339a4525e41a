"""The openvino generator: its options through the CLI and YAML, and (slow) real replies from the packaged
SmolLM2 GGUF file through OpenVINO GenAI's continuous batching, greedy and reproducible, through `admap proxy`,
with its report (what both GGUF engines do alike: tests/test_gguf_engines.py)."""

import importlib.util
import json

import pytest

from admap.cli import build_parser, main
from admap.commands.proxy import ProxyConfig
from admap.config import build, from_arguments, to_dict
from admap.generate import PROXY_SYSTEM_PROMPT, with_system_prompt
from admap.generate.openvino_generator import OpenVinoGenerator, OpenVinoOptions
from admap.generate.options import GeneratorOptions
from admap.generate.runner import build_generator
from admap.models import SMOLLM2_GGUF_FILE

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino_genai") is None,
    reason="OpenVINO GenAI is not installed (pip install 'admap[openvino]')",
)


def test_its_options_are_flags_and_yaml_under_its_name():
    arguments = ["proxy", "demo", "--generator", "openvino", "--openvino-precision", "f32", "--openvino-sequences", "8"]
    config = from_arguments(ProxyConfig, build_parser().parse_args(arguments))
    assert config.generation.generator_options["openvino"] == OpenVinoOptions(precision="f32", sequences=8)
    recorded = to_dict(config.generation)["openvino"]
    assert recorded["precision"] == "f32" and recorded["sequences"] == 8 and recorded["batch_tokens"] == 8192
    assert build(GeneratorOptions, to_dict(config.generation)) == config.generation
    assert "openvino" not in to_dict(GeneratorOptions())


def test_settings_that_cannot_run_are_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        OpenVinoGenerator(options=OpenVinoOptions(precision="fp8"))
    with pytest.raises(ValueError, match="openvino sequences must be > 0"):
        OpenVinoGenerator(options=OpenVinoOptions(sequences=0))
    with pytest.raises(ValueError, match="reads a local .gguf file"):
        OpenVinoGenerator(model="HuggingFaceTB/SmolLM2-360M-Instruct").report()


@pytest.fixture(scope="module")
def hh_conversations(hh_rlhf_path):
    """Five real HH-RLHF prompts as `admap map` asks them, and a question with a known answer."""
    from admap.load import load_preferences

    prompts = load_preferences(str(hh_rlhf_path), limit=5, progress=False).instructions["prompt_messages"]
    conversations = [json.loads(messages) for messages in prompts]
    conversations.append([{"role": "user", "content": "What is the capital of France?"}])
    return [with_system_prompt(c, PROXY_SYSTEM_PROMPT) for c in conversations]


@pytest.fixture(scope="module")
def generator():
    # Two sequences at a time: the window of requests refills while others still decode.
    options = build(GeneratorOptions, {"generator": "openvino", "max_new_tokens": 32, "openvino": {"sequences": 2}})
    return build_generator(options, progress=False)


@pytest.mark.slow
@needs_openvino
def test_greedy_replies_from_the_packaged_gguf_arrive_one_by_one(generator, hh_conversations):
    arrived = []
    replies = generator.generate(hh_conversations, on_result=lambda position, reply: arrived.append(position))
    assert sorted(arrived) == list(range(len(hh_conversations)))
    assert all(r.ok and r.tokens_in > 20 and 0 < r.tokens_out <= 32 for r in replies)
    assert "paris" in replies[-1].text.lower()
    assert generator.deterministic
    # Greedy: the same requests give the same replies.
    assert [r.text for r in generator.generate(hh_conversations)] == [r.text for r in replies]


@needs_openvino
def test_another_precision_is_another_request():
    # bf16 and f32 greedy replies part after a few tokens: the cache must not serve one for the other.
    assert OpenVinoGenerator(options=OpenVinoOptions(precision="f32")).identity()["precision"] == "f32"
    assert (
        OpenVinoGenerator(options=OpenVinoOptions(precision="f32")).identity()
        != OpenVinoGenerator(options=OpenVinoOptions(precision="bf16")).identity()
    )


@pytest.mark.slow
@needs_openvino
def test_label_and_report(generator):
    assert GeneratorOptions(generator="openvino").label == "openvino:SmolLM2-135M-Instruct"
    report = generator.report()
    assert report["gguf_file"] == SMOLLM2_GGUF_FILE and report["openvino_genai"]
    assert report["precision"] in ("f32", "bf16") and report["precision"] == generator.identity()["precision"]
    assert report["threads"] >= 1 and report["sequences"] == 2


@pytest.mark.slow
@needs_openvino
def test_admap_proxy_writes_every_reply_with_it(tmp_path):
    out = tmp_path / "proxies.jsonl"
    arguments = ["proxy", "demo", "--limit", "6", "--generator", "openvino", "--max-new-tokens", "16", "--quiet"]
    assert main([*arguments, "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and all(row["proxy_response"] for row in rows)
    summary = json.loads((tmp_path / "proxies.summary.json").read_text())
    assert summary["generation"]["succeeded"] == 6
