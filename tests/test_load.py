"""Loading every supported input format into the canonical tables.

Expected values below are worked out by hand from the fixture files in tests/fixtures/.
"""

import gzip
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from accounting import assert_accounted

from admap.errors import InputError
from admap.load import LoadOptions, load_preferences

FIXTURES = Path(__file__).parent / "fixtures"
HH_HARMLESS_TEST = Path(__file__).parent / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"

NOTHING_COUNTED = {
    "rows_read": 0,
    "rows_loaded": 0,
    "rows_skipped": 0,
    "rows_duplicate": 0,
    "rows_filtered": 0,
    "responses_read": 0,
    "responses_skipped": 0,
    "responses_merged": 0,
    "responses": 0,
    "responses_empty": 0,
    "responses_same_text": 0,
    "ratings_missing": 0,
    "rating_conflicts": 0,
    "instructions": 0,
    "instructions_sharing_a_prompt": 0,
    "preferences": 0,
    "identical_pairs": 0,
}


def counted(**counts):
    """The full counts dict: the given counts, every other one zero."""
    assert set(counts) <= set(NOTHING_COUNTED), set(counts) - set(NOTHING_COUNTED)
    return NOTHING_COUNTED | counts


def load(source, **kwargs):
    kwargs.setdefault("progress", False)
    return load_preferences(str(source), **kwargs)


def text_pairs(data):
    """The preferences as (instruction, chosen text, rejected text), in file order."""
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    instruction = dict(zip(data.instructions["instruction_id"], data.instructions["instruction"]))
    return [
        (instruction[p.instruction_id], text[p.chosen_id], text[p.rejected_id]) for p in data.preferences.itertuples()
    ]


def prompts(data):
    return {row.instruction: json.loads(row.prompt_messages) for row in data.instructions.itertuples()}


def user(text):
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- UltraFeedback (raw)


def test_ultrafeedback_raw():
    data = load(FIXTURES / "ultrafeedback.jsonl")
    assert data.format == "ultrafeedback"
    assert data.counts() == counted(rows_read=2, rows_loaded=2, responses_read=8, responses=8, instructions=2)
    assert_accounted(data)
    assert data.has_ratings and not data.has_preferences
    assert prompts(data) == {
        "Name three primary colors.": user("Name three primary colors."),
        "Write a haiku about autumn.": user("Write a haiku about autumn."),
    }
    assert list(data.instructions["source_row"]) == [1, 2]
    # UltraFeedback's `source` is kept per instruction (the viewer colours by it).
    assert list(data.instructions["source"]) == ["evol_instruct", "flan_v2"]
    colors = data.responses[data.responses["source_row"] == 1]
    assert list(colors["response"]) == [
        "Red, yellow and blue.",
        "Red, green and blue are the primary colors of light.",
        "Purple.",
        "Colors are nice.",
    ]
    assert list(colors["model"]) == ["gpt-4", "llama-2-7b-chat", "alpaca-7b", "falcon-40b-instruct"]
    assert list(colors["source_field"]) == [f"completions[{i}].response" for i in range(4)]
    # The default rating is the paper's fine-grained score.
    assert list(colors["rating"]) == [5.0, 4.0, 1.5, 2.0]
    # Every aspect is kept as its own column, ratings read from the "Rating" strings.
    assert list(colors["rating_helpfulness"]) == [5.0, 4.0, 1.0, 2.0]
    assert list(colors["rating_instruction_following"]) == [5.0, 3.0, 2.0, 1.0]
    assert list(colors["rating_truthfulness"]) == [5.0, 5.0, 1.0, 3.0]
    assert list(colors["rating_overall_score"]) == [8.5, 7.0, 2.0, 3.0]
    assert list(colors["rating_fine_grained_score"]) == [5.0, 4.0, 1.5, 2.0]
    # A secondary aspect rated "N/A" becomes NaN instead of an error.
    honesty = list(colors["rating_honesty"])
    assert honesty[:3] == [5.0, 4.0, 2.0] and math.isnan(honesty[3])
    # Response ids belong to their instruction.
    first_id = data.instructions["instruction_id"].iloc[0]
    assert (colors["instruction_id"] == first_id).all()


@pytest.mark.parametrize(
    "rating_field, expected_haiku_ratings, best_model",
    [
        ("fine-grained_score", [4.25, 3.5, 2.0, 4.0], "gpt-3.5-turbo"),
        ("overall_score", [6.0, 7.5, 4.0, 7.0], "wizardlm-13b"),
        ("helpfulness", [3.0, 5.0, 2.0, 4.0], "wizardlm-13b"),
        ("truthfulness", [5.0, 3.0, 3.0, 4.0], "gpt-3.5-turbo"),
    ],
)
def test_ultrafeedback_rating_field(rating_field, expected_haiku_ratings, best_model):
    data = load(FIXTURES / "ultrafeedback.jsonl", options=LoadOptions(rating_field=rating_field))
    haiku = data.responses[data.responses["source_row"] == 2]
    assert list(haiku["rating"]) == expected_haiku_ratings
    # The ordering the rating induces differs between fields: the best haiku depends on the choice.
    best = haiku.loc[haiku["rating"].idxmax(), "model"]
    assert best == best_model


def test_ultrafeedback_honesty_rating_field_leaves_na_completion_unrated():
    # Chosen as the rating, an "N/A" aspect is no rating: that completion is kept, scored, and in no pair.
    data = load(FIXTURES / "ultrafeedback.jsonl", options=LoadOptions(rating_field="honesty"))
    assert data.skipped == []
    assert data.counts()["ratings_missing"] == 1 and len(data.responses) == 8
    nice = data.responses.set_index("response").loc["Colors are nice."]
    assert math.isnan(nice["rating"])
    assert_accounted(data)
    haiku = data.responses[data.responses["source_row"] == 2]
    assert list(haiku["rating"]) == [5.0, 3.0, 2.0, 4.0]


def test_ultrafeedback_unknown_rating_field_is_refused():
    with pytest.raises(ValueError, match="not an UltraFeedback rating"):
        load(FIXTURES / "ultrafeedback.jsonl", options=LoadOptions(rating_field="stars"))


# ---------------------------------------------------------------- pair formats


def test_ultrafeedback_binarized():
    data = load(FIXTURES / "binarized.jsonl")
    assert data.format == "preference"
    # "5" is rejected in rows 1 and 2 of the same prompt_id: one response.
    assert data.counts() == counted(
        rows_read=3, rows_loaded=3, responses_read=6, responses_merged=1, responses=5, instructions=2, preferences=3
    )
    assert_accounted(data)
    # prompt_id is the instruction id; the prompt is the user turn the message lists repeat.
    assert list(data.instructions["instruction_id"]) == ["a1b2c3", "d4e5f6"]
    assert prompts(data) == {
        "What is 2+2?": user("What is 2+2?"),
        "Translate 'cat' to French.": user("Translate 'cat' to French."),
    }
    assert text_pairs(data) == [
        ("What is 2+2?", "4", "5"),
        ("What is 2+2?", "2+2 equals 4.", "5"),
        ("Translate 'cat' to French.", "chat", "chien"),
    ]
    assert list(data.preferences["source_row"]) == [1, 2, 3]
    rating = dict(zip(data.responses["response"], data.responses["rating"]))
    assert rating == {"4": 9.0, "5": 2.0, "2+2 equals 4.": 8.0, "chat": 10.0, "chien": 1.0}
    model_free = data.responses["model"].isna().all()
    assert model_free
    # The merged response keeps the row and field where it first appeared.
    five = data.responses[data.responses["response"] == "5"].iloc[0]
    assert (five["source_row"], five["source_field"]) == (1, "rejected")


def test_trl_conversational():
    data = load(FIXTURES / "trl_conversational.jsonl")
    assert data.format == "preference"
    assert_accounted(data)
    system_turn = [{"role": "system", "content": "You are terse."}] + user("Capital of France?")
    assert prompts(data) == {
        "Is the sky blue?": user("Is the sky blue?"),
        # A prompt of several turns is rendered whole, role by role.
        "system: You are terse.\n\nuser: Capital of France?": system_turn,
    }
    assert text_pairs(data) == [
        ("Is the sky blue?", "Yes, on a clear day.", "No."),
        ("system: You are terse.\n\nuser: Capital of France?", "Paris.", "Lyon."),
    ]
    assert data.responses["rating"].isna().all() and not data.has_ratings
    assert (data.counts()["instructions"], data.counts()["responses"], data.counts()["preferences"]) == (2, 4, 2)


def test_trl_standard_strings():
    data = load(FIXTURES / "trl_standard.jsonl")
    assert data.format == "preference"
    assert_accounted(data)
    assert prompts(data) == {"The sky is": user("The sky is"), "The sun is": user("The sun is")}
    # Completions are kept verbatim, leading space included.
    assert text_pairs(data) == [("The sky is", " blue.", " green."), ("The sun is", " yellow.", " purple.")]


def test_alpaca_pairs_regroup_into_distinct_responses():
    data = load(FIXTURES / "alpaca_pairs.jsonl")
    assert data.format == "alpaca"
    # 6 pairs over 4 distinct responses: 12 response slots, 4 new responses, the other 8 merged.
    assert data.counts() == counted(
        rows_read=6, rows_loaded=6, responses_read=12, responses_merged=8, responses=4, instructions=1, preferences=6
    )
    assert_accounted(data)
    assert list(data.responses["response"]) == ["Joyful.", "Glad.", "Content.", "Sad."]
    assert list(data.responses["source_row"]) == [1, 1, 2, 3]  # where each response first appeared
    assert list(data.responses["source_field"]) == ["chosen", "rejected", "rejected", "rejected"]
    assert text_pairs(data) == [
        ("Give a synonym for happy.", "Joyful.", "Glad."),
        ("Give a synonym for happy.", "Joyful.", "Content."),
        ("Give a synonym for happy.", "Joyful.", "Sad."),
        ("Give a synonym for happy.", "Glad.", "Content."),
        ("Give a synonym for happy.", "Glad.", "Sad."),
        ("Give a synonym for happy.", "Content.", "Sad."),
    ]
    # Responses are unique per instruction after regrouping.
    assert data.responses["response"].is_unique


def test_alpaca_input_is_part_of_the_instruction(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    rows = [
        {"instruction": "Summarize.", "input": "The cat sat on the mat.", "chosen": "A cat sat.", "rejected": "Dogs."},
        {"instruction": "Summarize.", "input": "Rain fell all day.", "chosen": "It rained.", "rejected": "Sunny."},
        {"instruction": "Summarize.", "input": "   ", "chosen": "Nothing to summarize.", "rejected": "Dogs."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load(path)
    assert_accounted(data)
    # Different inputs make different instructions; a blank input adds nothing.
    assert prompts(data) == {
        "Summarize.\n\nThe cat sat on the mat.": user("Summarize.\n\nThe cat sat on the mat."),
        "Summarize.\n\nRain fell all day.": user("Summarize.\n\nRain fell all day."),
        "Summarize.": user("Summarize."),
    }
    # "Dogs." under two different instructions is two responses, not a merge.
    assert data.counts()["responses_merged"] == 0 and len(data.responses) == 6


def test_hh_rlhf_transcripts():
    data = load(FIXTURES / "hh_rlhf.jsonl")
    assert data.format == "hh_rlhf"
    # Row 3 repeats row 1's prompt and chosen answer: one instruction, the answer one response.
    assert data.counts() == counted(
        rows_read=3, rows_loaded=3, responses_read=6, responses_merged=1, responses=5, instructions=2, preferences=3
    )
    assert_accounted(data)
    multi_turn = "user: Hi\n\nassistant: Hello! How can I help?\n\nuser: Tell me a fun fact."
    assert prompts(data) == {
        "How do I boil an egg?": user("How do I boil an egg?"),
        multi_turn: [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a fun fact."},
        ],
    }
    assert text_pairs(data) == [
        ("How do I boil an egg?", "Put it in boiling water for about nine minutes.", "Just microwave it."),
        (multi_turn, "Octopuses have three hearts.", "I don't know any."),
        ("How do I boil an egg?", "Put it in boiling water for about nine minutes.", "Fry it."),
    ]


def test_hh_rlhf_real_harmless_test_split_loads_every_row_with_no_flags():
    raw = [json.loads(line) for line in gzip.open(HH_HARMLESS_TEST, "rt", encoding="utf-8")]
    data = load(HH_HARMLESS_TEST)
    assert data.format == "hh_rlhf" and data.skipped == []
    c = data.counts()
    assert c["rows_read"] == c["rows_loaded"] == c["preferences"] == len(raw) == 2312
    assert c["responses_read"] == c["responses"] == 2 * 2312
    assert_accounted(data)
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    pairs = {p.source_row: (text[p.chosen_id], text[p.rejected_id]) for p in data.preferences.itertuples()}
    # Checked by hand: rows 87, 517, 926 and 1104 end 'chosen' with an empty Assistant turn, an empty
    # response that is kept, scored and paired.
    assert raw[87 - 1]["chosen"].endswith("\n\nAssistant: ")
    assert sorted(row for row, (chosen, _) in pairs.items() if chosen == "") == [87, 517, 926, 1104]
    assert c["responses_empty"] == 4
    # In 1255, 1689, 1951, 1953 and 2037 the transcripts part before the last Assistant turn of one
    # side (a turn marker without its blank line, a turn the other side lacks): the response is the
    # rest of each transcript after their last shared Assistant turn, and the rows are counted.
    assert data.tally.notes == {"hh_rlhf_responses_over_several_turns": 5}
    several = sorted(row for row, texts in pairs.items() if any("\n\nAssistant:" in t for t in texts))
    assert several == [1255, 1689, 1951, 1953, 2037]
    # Two prompts are asked twice with other answers: four instructions, not two of four responses.
    assert c["instructions"] == 2312 and c["instructions_sharing_a_prompt"] == 2
    prompt = dict(zip(data.instructions["instruction_id"], data.instructions["prompt_messages"]))
    for pref in data.preferences.itertuples():
        record = raw[pref.source_row - 1]
        chosen, rejected = pairs[pref.source_row]
        assert record["chosen"].rstrip().endswith(chosen) and record["rejected"].rstrip().endswith(rejected)
        messages = json.loads(prompt[pref.instruction_id])
        assert {m["role"] for m in messages} <= {"user", "assistant"} and messages[0]["role"] == "user"
        assert messages[-1]["content"] in record["chosen"] and messages[-1]["content"] in record["rejected"]
        # The prompt is the two transcripts' shared start (up to the whitespace around each turn).
        turns = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages)
        for transcript in (record["chosen"], record["rejected"]):
            assert " ".join(transcript.split()).startswith(" ".join(turns.split()))


# ---------------------------------------------------------------- auto-detection


@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("ultrafeedback.jsonl", "ultrafeedback"),
        ("binarized.jsonl", "preference"),
        ("trl_conversational.jsonl", "preference"),
        ("trl_standard.jsonl", "preference"),
        ("alpaca_pairs.jsonl", "alpaca"),
        ("hh_rlhf.jsonl", "hh_rlhf"),
    ],
)
def test_auto_detection_matches_the_named_format(fixture, expected):
    detected = load(FIXTURES / fixture)
    assert detected.format == expected
    named = load(FIXTURES / fixture, format=expected)
    pd.testing.assert_frame_equal(detected.instructions, named.instructions)
    pd.testing.assert_frame_equal(detected.responses, named.responses)
    pd.testing.assert_frame_equal(detected.preferences, named.preferences)


def test_limit_reads_only_the_first_rows():
    data = load(FIXTURES / "alpaca_pairs.jsonl", limit=2)
    assert data.counts()["rows_read"] == 2
    assert list(data.responses["response"]) == ["Joyful.", "Glad.", "Content."]


# ---------------------------------------------------------------- format 'columns'


def test_columns_long_from_csv():
    options = LoadOptions(
        instruction_column="instruction", response_column="response", rating_column="score", model_column="model"
    )
    data = load(FIXTURES / "columns_long.csv", format="columns", options=options)
    assert data.format == "columns"
    assert_accounted(data)
    assert data.counts()["instructions"] == 2 and data.counts()["preferences"] == 0
    assert list(data.instructions["instruction"]) == ["Define gravity.", "Name a prime number."]
    # CSV ratings are strings; they are read as numbers. Responses "7" and "9" stay text.
    assert list(data.responses["response"]) == [
        "A force that attracts masses.",
        "Something heavy.",
        "The curvature of spacetime, caused by mass.",
        "7",
        "9",
    ]
    assert list(data.responses["rating"]) == [8.0, 3.0, 9.5, 10.0, 1.0]
    assert data.responses["rating"].dtype == "float64"
    assert list(data.responses["model"]) == ["gpt-4", "alpaca-7b", "gpt-4", "gpt-4", "alpaca-7b"]
    # CSV rows are numbered as lines, the header being line 1.
    assert list(data.responses["source_row"]) == [2, 3, 4, 5, 6]
    assert list(data.instructions["source_row"]) == [2, 5]
    gravity = data.instructions["instruction_id"].iloc[0]
    assert list(data.responses["instruction_id"][:3]) == [gravity] * 3


def test_columns_long_with_id_column():
    options = LoadOptions(response_column="response", rating_column="score", id_column="question_id")
    data = load(FIXTURES / "columns_long.csv", format="columns", options=options)
    assert list(data.instructions["instruction_id"]) == ["q1", "q2"]
    assert list(data.responses["instruction_id"]) == ["q1", "q1", "q1", "q2", "q2"]


def test_columns_pair_from_csv():
    options = LoadOptions(instruction_column="question", chosen_column="good", rejected_column="bad")
    data = load(FIXTURES / "columns_pair.csv", format="columns", options=options)
    assert_accounted(data)
    assert text_pairs(data) == [
        ("Spell 'necessary'.", "necessary", "neccessary"),
        ("What is the boiling point of water at sea level?", "100 degrees Celsius.", "50 degrees Celsius."),
    ]
    assert list(data.responses["source_field"]) == ["good", "bad", "good", "bad"]
    assert list(data.preferences["source_row"]) == [2, 3]


def test_columns_is_never_auto_detected():
    with pytest.raises(InputError, match="matches no known format"):
        load(FIXTURES / "columns_pair.csv")


# ---------------------------------------------------------------- file types

PAIR_RECORDS = [
    {
        "prompt": "Name a fruit.",
        "prompt_id": "11",
        "chosen": "Apple.",
        "rejected": "Carrot.",
        "score_chosen": 9.0,
        "score_rejected": 2.5,
    },
    {
        "prompt": "Name a fruit.",
        "prompt_id": "11",
        "chosen": "Banana.",
        "rejected": "Carrot.",
        "score_chosen": 8.0,
        "score_rejected": 2.5,
    },
    {
        "prompt": 'Say hi in Spanish, "politely".',
        "prompt_id": "12",
        "chosen": "Hola, ¿qué tal?",
        "rejected": "Bye.",
        "score_chosen": 7.0,
        "score_rejected": 1.0,
    },
]


def _write_every_type(tmp_path):
    frame = pd.DataFrame(PAIR_RECORDS)
    paths = {
        "jsonl": tmp_path / "pairs.jsonl",
        "json": tmp_path / "pairs.json",
        "parquet": tmp_path / "pairs.parquet",
        "csv": tmp_path / "pairs.csv",
        "jsonl.gz": tmp_path / "pairs.jsonl.gz",
        "csv.gz": tmp_path / "pairs.csv.gz",
    }
    paths["jsonl"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PAIR_RECORDS), "utf-8")
    paths["json"].write_text(json.dumps(PAIR_RECORDS, indent=2), "utf-8")
    frame.to_parquet(paths["parquet"], index=False)
    frame.to_csv(paths["csv"], index=False)
    with gzip.open(paths["jsonl.gz"], "wt", encoding="utf-8") as handle:
        for record in PAIR_RECORDS:
            handle.write(json.dumps(record) + "\n")
    frame.to_csv(paths["csv.gz"], index=False, compression="gzip")
    return paths


def test_every_file_type_gives_the_same_tables(tmp_path):
    loaded = {kind: load(path) for kind, path in _write_every_type(tmp_path).items()}
    reference = loaded["jsonl"]
    assert reference.format == "preference"
    assert list(reference.instructions["instruction_id"]) == ["11", "12"]
    assert text_pairs(reference) == [
        ("Name a fruit.", "Apple.", "Carrot."),
        ("Name a fruit.", "Banana.", "Carrot."),
        ('Say hi in Spanish, "politely".', "Hola, ¿qué tal?", "Bye."),
    ]
    assert list(reference.responses["rating"]) == [9.0, 2.5, 8.0, 7.0, 1.0]
    for kind, data in loaded.items():
        assert data.format == "preference", kind
        assert data.counts() == reference.counts(), kind
        assert_accounted(data)
        # Row numbers are what a person finds in the file: CSV has its header on line 1.
        offset = 1 if kind.startswith("csv") else 0
        for table in ("instructions", "responses", "preferences"):
            got, want = getattr(data, table).copy(), getattr(reference, table).copy()
            assert list(got["source_row"]) == [r + offset for r in want["source_row"]], (kind, table)
            pd.testing.assert_frame_equal(got.drop(columns="source_row"), want.drop(columns="source_row"), obj=kind)


# ---------------------------------------------------------------- hub datasets


def test_hub_id_offline_fails_with_input_error(monkeypatch, tmp_path):
    import datasets
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # The libraries read those variables once, at import; set what they already read, and an empty cache.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError) as info:
        load("openbmb/UltraFeedback")
    message = str(info.value)
    assert info.value.file == "openbmb/UltraFeedback"
    assert message.startswith("openbmb/UltraFeedback: ")
    assert "not a local file" in message and "Hugging Face hub failed" in message


BINARIZED_HUB_ROWS = [
    {
        "prompt": "Name an ocean.",
        "prompt_id": "ocean",
        "chosen": [{"role": "user", "content": "Name an ocean."}, {"role": "assistant", "content": "The Pacific."}],
        "rejected": [{"role": "user", "content": "Name an ocean."}, {"role": "assistant", "content": "The Sahara."}],
        "score_chosen": 9.0,
        "score_rejected": 1.0,
    },
    {
        "prompt": "Name an ocean.",
        "prompt_id": "ocean",
        "chosen": [{"role": "user", "content": "Name an ocean."}, {"role": "assistant", "content": "The Atlantic."}],
        "rejected": [{"role": "user", "content": "Name an ocean."}, {"role": "assistant", "content": "The Sahara."}],
        "score_chosen": 8.5,
        "score_rejected": 1.0,
    },
]


@pytest.mark.parametrize("split, expected_split", [("test_prefs", "test_prefs"), (None, "train")])
def test_hub_id_loads_through_datasets(monkeypatch, split, expected_split):
    import datasets

    calls = []

    def fake_load_dataset(name, *args, **kwargs):
        calls.append((name, args, kwargs))
        return datasets.Dataset.from_list(BINARIZED_HUB_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load("HuggingFaceH4/ultrafeedback_binarized", split=split)
    assert len(calls) == 1
    name, args, kwargs = calls[0]
    assert name == "HuggingFaceH4/ultrafeedback_binarized"
    assert kwargs.get("split", args[0] if args else None) == expected_split
    assert data.format == "preference" and data.source == "HuggingFaceH4/ultrafeedback_binarized"
    assert_accounted(data)
    assert text_pairs(data) == [
        ("Name an ocean.", "The Pacific.", "The Sahara."),
        ("Name an ocean.", "The Atlantic.", "The Sahara."),
    ]
    assert list(data.preferences["source_row"]) == [1, 2]  # hub rows are numbered from 1
    assert data.counts()["responses_merged"] == 1
