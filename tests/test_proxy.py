import json

import pandas as pd
import pytest
from progress_bars import record_bars

from admap.errors import InputError
from admap.generate import Completion, with_system_prompt
from admap.proxy import attach_proxies, read_proxy_file


class RecordingGenerator:
    """A generator that answers from a table and records what it was asked (no model involved)."""

    name, model, deterministic = "recording", "table", True

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def identity(self):
        return {"generator": self.name, "model": self.model}

    def generate(self, conversations, *, on_result=None):
        self.calls.append(conversations)
        results = []
        for position, conversation in enumerate(conversations):
            text = self.replies[conversation[-1]["content"]].strip()
            results.append(Completion(text=text or None, error=None if text else "empty reply"))
            if on_result:
                on_result(position, results[-1])
        return results


def _instructions():
    return pd.DataFrame(
        {
            "instruction_id": ["a", "b", "c"],
            "instruction": ["Question A", "Question B", "Question C"],
            "prompt_messages": [json.dumps([{"role": "user", "content": f"Question {k}"}]) for k in "ABC"],
            "proxy_response": ["from the column", None, None],
            "source_row": [1, 2, 3],
        }
    )


def test_column_then_file_then_generator(tmp_path):
    side = tmp_path / "proxies.jsonl"
    # Keyed by text, with the `proxy` key, as proxies from other tools often are.
    side.write_text(json.dumps({"instruction": "Question B", "proxy": "from the file"}) + "\n")
    generator = RecordingGenerator({"Question C": "generated"})
    table, stats = attach_proxies(
        _instructions(), proxy_file=str(side), generator=generator, system_prompt="Be helpful."
    )
    assert (stats.requests, stats.succeeded, stats.failed) == (1, 1, 0)
    assert table["proxy_response"].tolist() == ["from the column", "from the file", "generated"]
    assert table["proxy_source"].tolist() == ["column", "file", "generated:table"]
    # Only the instruction still missing a proxy is generated, with the system prompt in front.
    assert generator.calls == [
        [[{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Question C"}]]
    ]


def test_without_a_generator_missing_proxies_stay_missing():
    table, stats = attach_proxies(_instructions())
    assert stats is None
    assert table["proxy_response"].isna().tolist() == [False, True, True]


def test_an_empty_generated_proxy_counts_as_missing():
    table, stats = attach_proxies(
        _instructions(), generator=RecordingGenerator({"Question B": "  ", "Question C": "ok"})
    )
    assert (stats.failed, stats.errors) == (1, [{"index": 0, "error": "empty reply"}])
    assert table["proxy_source"].tolist() == ["column", None, "generated:table"]


def test_proxy_file_keys_and_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"instruction_id": "a", "proxy_response": "A"})
        + "\n"
        + json.dumps({"prompt_id": 7, "response": "B"})
        + "\n"
    )
    assert read_proxy_file(str(path)) == ({"a": "A", "7": "B"}, {})
    path.write_text(json.dumps({"instruction_id": "a", "proxy_response": ""}) + "\n")
    with pytest.raises(InputError, match=r"row 1, field 'proxy_response': is empty"):
        read_proxy_file(str(path))
    path.write_text(json.dumps({"instruction_id": "a"}) + "\n")
    with pytest.raises(InputError, match=r"row 1, field 'proxy_response': missing"):
        read_proxy_file(str(path))
    path.write_text(json.dumps({"proxy": "x"}) + "\n")
    with pytest.raises(InputError, match=r"row 1, field 'instruction_id': missing"):
        read_proxy_file(str(path))


def test_system_prompt_is_not_doubled():
    messages = [{"role": "system", "content": "Own."}, {"role": "user", "content": "Hi"}]
    assert with_system_prompt(messages, "Other.") == messages
    assert with_system_prompt(messages[1:], None) == messages[1:]


@pytest.mark.slow
def test_smollm2_generator_writes_replies_under_one_bar(monkeypatch):
    from admap.generate.transformers_generator import TransformersGenerator

    bars = record_bars(monkeypatch)
    generator = TransformersGenerator(max_new_tokens=24, batch_size=2, device="cpu")
    replies = generator.generate(
        [
            [{"role": "user", "content": "What is the capital of France?"}],
            [{"role": "user", "content": "Name a primary colour."}],
            [{"role": "user", "content": "Say hello."}],
        ]
    )
    assert len(replies) == 3 and all(r.ok and r.tokens_in > 0 and r.tokens_out > 0 for r in replies)
    assert "paris" in replies[0].text.lower()
    assert generator.deterministic and generator.identity()["dtype"] == "float32"
    # One bar over the 3 replies, advanced per batch of 2.
    assert [(bar.total, bar.updates) for bar in bars] == [(3, [2, 1])]


def test_instructions_sharing_a_prompt_share_one_proxy():
    """A repeated prompt (UltraFeedback rows asked twice) is answered once, and an answer the column
    gives one instruction serves the others of its prompt."""
    prompt = {k: json.dumps([{"role": "user", "content": f"Question {k}"}]) for k in "ABC"}
    instructions = pd.DataFrame(
        {
            "instruction_id": ["a", "a.2", "b", "c", "c.2", "b.2"],
            "instruction": ["Question A", "Question A", "Question B", "Question C", "Question C", "Question B"],
            "prompt_messages": [prompt[k] for k in "AABCCB"],
            "proxy_response": [None, "from the column", None, None, None, None],
            "source_row": [1, 2, 3, 4, 5, 6],
        }
    )
    generator = RecordingGenerator({"Question B": "generated B", "Question C": "generated C"})
    table, stats = attach_proxies(instructions, generator=generator)
    assert table["proxy_response"].tolist() == [
        "from the column",
        "from the column",
        "generated B",
        "generated C",
        "generated C",
        "generated B",
    ]
    assert table["proxy_source"].tolist() == ["column", "column"] + ["generated:table"] * 4
    assert [[c[-1]["content"] for c in call] for call in generator.calls] == [["Question B", "Question C"]]
    assert (stats.requests, stats.succeeded) == (2, 2)
