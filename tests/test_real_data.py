"""Real data as it is: raw UltraFeedback, the authors' Alpaca pairs and HH-RLHF load and map with no
flags. Empty responses, repeated rows, repeated prompts, ties and unrated completions are taken,
counted and said; the data unit is the authors' (one UltraFeedback row, one data point).
"""

import json
import math
from collections import Counter, defaultdict

import pandas as pd
import pytest
from accounting import assert_accounted
from ultrafeedback_raw import (
    authors_data_points,
    authors_pairs,
    authors_regions,
    authors_scores,
    write_fixture,
)

from admap.cli import main
from admap.load import LoadOptions, load_preferences
from admap.load.schema import instruction_key
from admap.select import preference_pairs


def load(source, **kwargs):
    kwargs.setdefault("progress", False)
    return load_preferences(str(source), **kwargs)


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def raw(tmp_path):
    """The raw-UltraFeedback fixture: (data file, proxy file, rows)."""
    return write_fixture(tmp_path)


def text_pairs_by_row(data, pairs):
    """Pairs as (the file row of their instruction, chosen text, rejected text)."""
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    row = dict(zip(data.instructions["instruction_id"], data.instructions["source_row"]))
    return Counter((row[p.instruction_id], text[p.chosen_id], text[p.rejected_id]) for p in pairs.itertuples())


# ---------------------------------------------------------------- raw UltraFeedback


def test_raw_ultrafeedback_loads_one_instruction_per_row_with_repeats_counted_once(raw):
    path, _, rows = raw
    data = load(path)
    assert_accounted(data)
    points = authors_data_points(rows)
    c = data.counts()
    assert (c["rows_read"], c["rows_loaded"], c["rows_duplicate"], c["rows_skipped"]) == (51, 45, 6, 0)
    # One instruction per distinct row, at the row where it first appears.
    assert list(data.instructions["source_row"]) == [number for number, _ in points]
    # Each exact repeat is listed with the row it repeats.
    first_row = {json.dumps(r, sort_keys=True): n for n, r in reversed(list(enumerate(rows, start=1)))}
    repeats = [(n, first_row[json.dumps(r, sort_keys=True)]) for n, r in enumerate(rows, start=1)]
    repeats = [(n, first) for n, first in repeats if n != first]
    listed = [(s.row, s.unit, s.reason) for s in data.skipped]
    assert listed == [
        (n, "duplicate", f"repeats row {first} (same prompt and completions): counted once") for n, first in repeats
    ]
    # A prompt asked again with other completions is another instruction, with an id of its own.
    assert c["instructions_sharing_a_prompt"] == 5
    again = data.instructions[data.instructions["instruction"].duplicated(keep=False)]
    for prompt, group in again.groupby("instruction", sort=False):
        key = instruction_key([{"role": "user", "content": prompt}])
        assert list(group["instruction_id"]) == [key, f"{key}.2"]
    # Each instruction's responses are its row's completions, in order, with their own ratings.
    for (number, record), instruction_id in zip(points, data.instructions["instruction_id"]):
        responses = data.responses[data.responses["instruction_id"] == instruction_id]
        assert list(responses["response"]) == [c["response"] for c in record["completions"]]
        assert list(responses["rating"]) == [c["fine-grained_score"] for c in record["completions"]]
        assert list(responses["model"]) == record["models"]
        assert (responses["source_row"] == number).all()
    assert list(data.instructions["source"]) == [record["source"] for _, record in points]
    # The empty completion is a response; the repeated text within a row is a second response.
    assert (c["responses_empty"], c["responses_same_text"], c["rating_conflicts"]) == (1, 1, 1)
    assert c["responses"] == sum(len(r["completions"]) for _, r in points)
    repeated = data.responses[data.responses["same_text_as"].notna()].iloc[0]
    first = data.responses.set_index("response_id").loc[repeated["same_text_as"]]
    assert first["response"] == repeated["response"] and first["rating"] != repeated["rating"]


@pytest.mark.parametrize("principle", [None, "helpfulness"])
def test_pairs_are_the_authors_pairs(raw, principle):
    path, _, rows = raw
    data = load(path, options=LoadOptions(principle=principle))
    pairs = preference_pairs(data.responses, rule="annotated")
    assert text_pairs_by_row(data, pairs) == Counter(authors_pairs(authors_data_points(rows, principle=principle)))
    # Where a row gives one text two ratings, the last decides, and the pair names that completion.
    rating = dict(zip(data.responses["response_id"], data.responses["rating"]))
    assert all(rating[p.chosen_id] > rating[p.rejected_id] for p in pairs.itertuples())


def test_principle_selects_the_authors_subset(raw, tmp_path):
    path, _, rows = raw
    data = load(path, options=LoadOptions(principle="helpfulness"))
    assert_accounted(data)
    points = authors_data_points(rows, principle="helpfulness")
    assert list(data.instructions["source_row"]) == [number for number, _ in points]
    helpful = sum(sum(c["principle"] == "helpfulness" for c in r["completions"]) == 4 for r in rows)
    assert data.counts()["rows_filtered"] == len(rows) - helpful
    assert data.row_filter == "rows with exactly 4 completions whose principle is 'helpfulness'"
    assert data.report()["row_filter"] == data.row_filter
    pairs = write_lines(tmp_path / "pairs.jsonl", [{"instruction": "Q?", "input": "", "chosen": "A", "rejected": "B"}])
    with pytest.raises(ValueError, match="format 'alpaca' has no principle"):
        load(pairs, options=LoadOptions(principle="helpfulness"))


def test_group_by_prompt_merges_a_repeated_prompt_into_one_instruction(raw):
    path, _, rows = raw
    data = load(path, options=LoadOptions(group_by="prompt"))
    assert_accounted(data)
    c = data.counts()
    # Exact repeats are still counted once; the five prompts asked twice now have eight responses.
    assert (c["rows_duplicate"], c["instructions"], c["instructions_sharing_a_prompt"]) == (6, 40, 0)
    sizes = data.responses.groupby("instruction_id").size()
    assert sorted(sizes.value_counts().items()) == [(3, 1), (4, 34), (8, 5)]


# ---------------------------------------------------------------- the authors' Alpaca pairs


def test_the_authors_alpaca_pairs_load_as_their_rows(raw, tmp_path):
    path, _, rows = raw
    points = authors_data_points(rows)
    pairs = authors_pairs(points)
    # data-process-full.py writes instruction, input, chosen, rejected.
    alpaca = tmp_path / "pairs.jsonl"
    write_lines(
        alpaca,
        [{"instruction": rows[n - 1]["instruction"], "input": "", "chosen": c, "rejected": r} for n, c, r in pairs],
    )
    data = load(alpaca)
    assert_accounted(data)
    assert data.skipped == []
    # The pairs of one UltraFeedback row share its completions: one instruction per row with pairs,
    # the rows that repeat a prompt with other completions apart, as the authors count them.
    paired_rows = sorted({n for n, _, _ in pairs})
    assert len(data.instructions) == len(paired_rows)
    assert data.counts()["instructions_sharing_a_prompt"] == 5
    assert data.counts()["responses_empty"] == 1
    row_of = {(rows[n - 1]["instruction"], c, r): n for n, c, r in pairs}
    instruction_of = dict(zip(data.instructions["instruction_id"], data.instructions["instruction"]))
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    rows_of_instruction = defaultdict(set)
    for p in data.preferences.itertuples():
        rows_of_instruction[p.instruction_id].add(
            row_of[(instruction_of[p.instruction_id], text[p.chosen_id], text[p.rejected_id])]
        )
    assert all(len(numbers) == 1 for numbers in rows_of_instruction.values())
    assert sorted(n for numbers in rows_of_instruction.values() for n in numbers) == paired_rows
    assert Counter(row_of[t] for t in text_pairs(data)) == Counter(n for n, _, _ in pairs)
    # Merged by prompt, the rows of a repeated prompt are one instruction again.
    merged = load(alpaca, options=LoadOptions(group_by="prompt"))
    assert len(merged.instructions) == len({rows[n - 1]["instruction"] for n in paired_rows})


def text_pairs(data):
    """The dataset's own pairs as (instruction, chosen text, rejected text)."""
    text = dict(zip(data.responses["response_id"], data.responses["response"]))
    instruction = dict(zip(data.instructions["instruction_id"], data.instructions["instruction"]))
    return [
        (instruction[p.instruction_id], text[p.chosen_id], text[p.rejected_id]) for p in data.preferences.itertuples()
    ]


def test_a_pair_row_linking_two_instructions_of_a_prompt_merges_them(tmp_path):
    rows = [
        {"instruction": "Q?", "input": "", "chosen": "a", "rejected": "b"},
        {"instruction": "Q?", "input": "", "chosen": "c", "rejected": "d"},
        {"instruction": "Q?", "input": "", "chosen": "b", "rejected": "c"},
        {"instruction": "Q?", "input": "", "chosen": "e", "rejected": "f"},
    ]
    data = load(write_lines(tmp_path / "pairs.jsonl", rows))
    assert_accounted(data)
    key = instruction_key([{"role": "user", "content": "Q?"}])
    # Rows 1 and 2 start apart; row 3 shares a response with each, so the three are one instruction.
    assert list(data.instructions["instruction_id"]) == [key, f"{key}.2"]
    by_instruction = data.responses.groupby("instruction_id", sort=False)["response"].apply(list).to_dict()
    assert by_instruction == {key: ["a", "b", "c", "d"], f"{key}.2": ["e", "f"]}
    assert [p.instruction_id for p in data.preferences.itertuples()] == [key, key, key, f"{key}.2"]
    assert text_pairs(data) == [("Q?", "a", "b"), ("Q?", "c", "d"), ("Q?", "b", "c"), ("Q?", "e", "f")]


# ---------------------------------------------------------------- empty responses, ties, unrated


def _alpaca(i, chosen=None, rejected=None):
    return {
        "instruction": f"Question {i}?",
        "input": "",
        "chosen": chosen if chosen is not None else f"Good {i}.",
        "rejected": rejected if rejected is not None else f"Bad {i}.",
    }


def _trl_messages(i, chosen=None, rejected=None):
    return {
        "prompt": [{"role": "user", "content": f"Question {i}?"}],
        "chosen": [{"role": "assistant", "content": chosen if chosen is not None else f"Good {i}."}],
        "rejected": [{"role": "assistant", "content": rejected if rejected is not None else f"Bad {i}."}],
    }


def _hh(i, chosen=None, rejected=None):
    prefix = f"\n\nHuman: Question {i}?\n\nAssistant:"
    return {
        "chosen": prefix + " " + (chosen if chosen is not None else f"Good {i}."),
        "rejected": prefix + " " + (rejected if rejected is not None else f"Bad {i}."),
    }


EMPTY = {
    "alpaca empty rejected": (_alpaca, {"rejected": ""}, "rejected"),
    "alpaca blank chosen": (_alpaca, {"chosen": "  \n\t "}, "chosen"),
    "conversational empty content": (_trl_messages, {"rejected": ""}, "rejected"),
    "hh-rlhf empty last turn": (_hh, {"chosen": ""}, "chosen"),
}


@pytest.mark.parametrize("make, change, field", EMPTY.values(), ids=EMPTY.keys())
def test_an_empty_response_is_a_response(tmp_path, make, change, field):
    path = write_lines(tmp_path / "pairs.jsonl", [make(1), make(2, **change), make(3)])
    data = load(path)
    assert_accounted(data)
    assert data.skipped == []
    assert (data.counts()["responses_empty"], data.counts()["preferences"]) == (1, 3)
    empty = data.responses[data.responses["response"].str.strip() == ""]
    assert list(empty["source_row"]) == [2] and list(empty["source_field"]) == [field]
    side = "chosen_id" if field == "chosen" else "rejected_id"
    assert empty["response_id"].iloc[0] in set(data.preferences[side])
    # --drop-empty: the empty response and its pair are left out, each listed; the other answer stays.
    dropped = load(path, options=LoadOptions(drop_empty=True))
    assert_accounted(dropped)
    assert [(s.row, s.field, s.unit, s.reason) for s in dropped.skipped] == [
        (2, field, "response", "is empty (--drop-empty)")
    ]
    c = dropped.counts()
    assert (c["responses_empty"], c["preferences"], c["instructions"], c["responses"]) == (0, 2, 3, 5)


def test_an_empty_completion_and_an_empty_csv_cell_are_responses(tmp_path):
    csv = tmp_path / "pairs.csv"
    csv.write_text('q,good,bad\nQ1?,A.,B.\nQ2?,"",B.\nQ3?,A.,   \n')
    options = LoadOptions(instruction_column="q", chosen_column="good", rejected_column="bad")
    data = load(csv, format="columns", options=options)
    assert data.skipped == [] and data.counts()["responses_empty"] == 2
    assert list(data.preferences["source_row"]) == [2, 3, 4]
    dropped = load(csv, format="columns", options=LoadOptions(**{**options.__dict__, "drop_empty": True}))
    assert [(s.row, s.field) for s in dropped.skipped] == [(3, "good"), (4, "bad")]
    assert list(dropped.preferences["source_row"]) == [2]
    assert_accounted(dropped)


IDENTICAL = {
    "alpaca": (_alpaca, {"chosen": "Same.", "rejected": "Same."}),
    "conversational": (_trl_messages, {"chosen": "Same.", "rejected": "Same."}),
    "hh-rlhf": (_hh, {"chosen": "Same.", "rejected": "Same."}),
}


@pytest.mark.parametrize("make, change", IDENTICAL.values(), ids=IDENTICAL.keys())
def test_a_pair_of_one_text_is_one_response_and_no_pair(tmp_path, make, change):
    data = load(write_lines(tmp_path / "pairs.jsonl", [make(1), make(2, **change), make(3)]))
    assert_accounted(data)
    assert [(s.row, s.unit) for s in data.skipped] == [(2, "identical_pair")]
    c = data.counts()
    assert (c["identical_pairs"], c["preferences"], c["instructions"], c["responses"], c["responses_merged"]) == (
        1,
        2,
        3,
        5,
        1,
    )
    assert list(data.responses.loc[data.responses["source_row"] == 2, "response"]) == ["Same."]


def _uf_completion(text, score, **extra):
    return {
        "model": "m",
        "principle": "helpfulness",
        "response": text,
        "fine-grained_score": score,
        "annotations": {"helpfulness": {"Rating": "3"}},
        **extra,
    }


@pytest.mark.parametrize("rating", [None, math.nan, "N/A", "", " n/a "], ids=["None", "NaN", "N/A", "blank", "n/a"])
def test_an_unrated_completion_is_kept_and_in_no_pair(tmp_path, rating):
    row = {
        "instruction": "Q?",
        "completions": [_uf_completion("a", 5.0), _uf_completion("b", rating), _uf_completion("c", 2.0)],
    }
    data = load(write_lines(tmp_path / "uf.jsonl", [row]))
    assert data.skipped == [] and data.counts()["ratings_missing"] == 1
    assert list(data.responses["response"]) == ["a", "b", "c"] and math.isnan(data.responses["rating"].iloc[1])
    assert text_pairs_by_row(data, preference_pairs(data.responses)) == Counter({(1, "a", "c"): 1})


def test_unrated_pair_scores_and_csv_cells(tmp_path):
    trl = [{"prompt": "Q?", "chosen": "A.", "rejected": "B.", "score_chosen": 8.0, "score_rejected": None}]
    data = load(write_lines(tmp_path / "trl.jsonl", trl))
    assert data.counts()["ratings_missing"] == 1 and math.isnan(data.responses["rating"].iloc[1])
    csv = tmp_path / "long.csv"
    csv.write_text("instruction,response,rating\nQ1?,A.,1\nQ1?,B.,N/A\nQ1?,C.,\nQ1?,D.,3\n")
    data = load(csv, format="columns", options=LoadOptions(response_column="response", rating_column="rating"))
    assert data.skipped == [] and data.counts()["ratings_missing"] == 2
    assert text_pairs_by_row(data, preference_pairs(data.responses)) == Counter({(2, "D.", "A."): 1})


def test_a_long_table_keeps_a_repeated_text_and_counts_an_exact_repeat_once(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("instruction,response,rating\nQ1?,A.,1\nQ1?,B.,2\nQ1?,A.,3\nQ2?,A.,4\nQ1?,B.,2\n")
    data = load(path, format="columns", options=LoadOptions(response_column="response", rating_column="rating"))
    assert_accounted(data)
    assert [(s.row, s.unit) for s in data.skipped] == [(6, "duplicate")]
    assert list(data.responses["source_row"]) == [2, 3, 4, 5]
    assert data.counts()["responses_same_text"] == 1 and data.counts()["rating_conflicts"] == 1
    # "A." is rated 1, then 3: the last rating decides its pairs, as in the authors' code.
    assert text_pairs_by_row(data, preference_pairs(data.responses)) == Counter({(2, "A.", "B."): 1})


def test_an_ultrafeedback_row_without_completions_is_an_instruction_without_responses(tmp_path):
    path = write_lines(
        tmp_path / "uf.jsonl",
        [{"instruction": "Q1?", "completions": [_uf_completion("a", 1.0)]}, {"instruction": "Q2?", "completions": []}],
    )
    data = load(path)
    assert_accounted(data)
    assert data.skipped == []
    assert list(data.instructions["instruction"]) == ["Q1?", "Q2?"] and len(data.responses) == 1


# ---------------------------------------------------------------- through `admap map`


def test_alpaca_pairs_with_empty_completions_map_with_no_flags(raw, tmp_path):
    path, side, rows = raw
    proxies = {json.loads(line)["instruction"]: json.loads(line)["proxy"] for line in side.read_text().splitlines()}
    pairs = authors_pairs(authors_data_points(rows))
    records = [
        {
            "instruction": rows[n - 1]["instruction"],
            "input": "",
            "chosen": c,
            "rejected": r,
            "proxy": proxies[rows[n - 1]["instruction"]],
        }
        for n, c, r in pairs
    ]
    assert any(r["rejected"] == "" for r in records)
    alpaca = write_lines(tmp_path / "pairs.jsonl", records)
    run = tmp_path / "run"
    argv = [
        "map",
        str(alpaca),
        "--proxy-column",
        "proxy",
        "--scorer",
        "rouge_l",
        "--generator",
        "none",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["rows_read"] == summary["dataset"]["rows_loaded"] == len(records)
    assert summary["dataset"]["responses_empty"] == 1 and summary["skipped"] == []
    scores = pd.read_parquet(run / "scores.parquet")
    empty = scores[scores["response"] == ""]
    assert len(empty) == 1 and empty["alignment_score"].iloc[0] == 0.0  # scored: no word in common
    full = [json.loads(line) for line in (run / "pairs" / "full.jsonl").read_text().splitlines()]
    assert sum(r["rejected"][0]["content"] == "" for r in full) == sum(r["rejected"] == "" for r in records)


def map_with_loopback_proxies(path, run, server, monkeypatch, *flags):
    """`admap map` with proxies from the loopback chat server through the OpenAI client, scored by ROUGE-L."""
    monkeypatch.setenv("ADMAP_TEST_KEY", "sk-test")
    argv = ["map", str(path), "--generator", "openai", "--base-url", server.url, "--api-key-env", "ADMAP_TEST_KEY"]
    assert main([*argv, "--no-cache", "--scorer", "rouge_l", *flags, "--out", str(run), "--quiet"]) == 0
    return json.loads((run / "summary.json").read_text())


def test_a_repeated_prompt_gets_one_proxy_request(raw, tmp_path, chat_server, monkeypatch):
    path, _, rows = raw
    run = tmp_path / "run"
    summary = map_with_loopback_proxies(path, run, chat_server, monkeypatch)
    distinct = {r["instruction"] for r in rows}
    assert chat_server.count() == len(distinct) == 40
    assert sorted(request.prompt for request in chat_server.requests) == sorted(distinct)
    assert summary["generation"]["requests"] == 40 and summary["proxies"] == {"generated:gpt-4o-2024-11-20": 45}
    map_table = pd.read_parquet(run / "map.parquet")
    # The instructions of one prompt share its proxy.
    assert (map_table.groupby("instruction")["proxy_response"].nunique() == 1).all()
    assert map_table["is_mapped"].all()


def _region_rows(run) -> dict[str, list[int]]:
    map_table = pd.read_parquet(run / "map.parquet")
    return {
        region: sorted(map_table.loc[map_table["region"] == region, "source_row"])
        for region in ("high_variance", "high_mean", "low_mean")
    }


def _pair_rows(run, subset) -> Counter:
    row = pd.read_parquet(run / "map.parquet").set_index("instruction_id")["source_row"]
    records = [json.loads(line) for line in (run / "pairs" / f"{subset}.jsonl").read_text().splitlines()]
    return Counter((row[r["instruction_id"]], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in records)


@pytest.mark.slow
@pytest.mark.parametrize("principle", [None, "helpfulness"])
def test_admap_map_on_raw_ultrafeedback_matches_the_authors_rules(raw, tmp_path, minilm, principle):
    """The paper's pipeline re-implemented from the authors' code (tests/ultrafeedback_raw.py) and
    `admap map` with no flags but the proxies' file (and the authors' subset when asked): the same
    regions, member for member, and the same DPO pairs in each."""
    path, side, rows = raw
    run = tmp_path / "run"
    argv = ["map", str(path), "--proxy-file", str(side), "--generator", "none", "--out", str(run), "--quiet"]
    assert main(argv + (["--principle", principle] if principle else [])) == 0

    proxies = {json.loads(line)["instruction"]: json.loads(line)["proxy"] for line in side.read_text().splitlines()}
    points = authors_data_points(rows, principle=principle)
    scores = authors_scores(points, proxies, minilm)
    regions = authors_regions(points, scores)
    assert {k: len(v) for k, v in regions.items()} == {k: len(v) for k, v in _region_rows(run).items()}
    assert regions == _region_rows(run)
    map_table = pd.read_parquet(run / "map.parquet").set_index("source_row")
    for (number, _), row_scores in zip(points, scores):
        assert map_table.loc[number, "mean_score"] == pytest.approx(sum(row_scores) / len(row_scores), abs=1e-5)
    pairs = authors_pairs(points)
    assert _pair_rows(run, "full") == Counter(pairs)
    for region, members in regions.items():
        assert _pair_rows(run, region) == Counter(p for p in pairs if p[0] in set(members))
    summary = json.loads((run / "summary.json").read_text())
    kept = [r for r in rows if principle is None or sum(c["principle"] == principle for c in r["completions"]) == 4]
    assert summary["dataset"]["rows_duplicate"] == len(kept) - len(points)
    assert summary["dataset"]["rows_filtered"] == len(rows) - len(kept)
    assert {s["unit"] for s in summary["skipped"]} == {"duplicate"}


@pytest.mark.slow
def test_hh_rlhf_harmless_test_maps_with_no_flags(tmp_path, hh_rlhf_path, chat_server, monkeypatch):
    """Every one of the 2,312 rows of the real file is mapped: empty last turns are scored, the rows
    whose transcripts part early are counted, a prompt asked twice is two instructions with one proxy."""
    run = tmp_path / "hh"
    summary = map_with_loopback_proxies(hh_rlhf_path, run, chat_server, monkeypatch, "--concurrency", "16")
    dataset = summary["dataset"]
    assert dataset["rows_read"] == dataset["rows_loaded"] == dataset["preferences"] == 2312
    assert summary["skipped"] == [] and dataset["responses_empty"] == 4
    assert dataset["notes"] == {"hh_rlhf_responses_over_several_turns": 5}
    assert summary["regions"]["unmapped"] == 0 and sum(summary["regions"].values()) == 2312
    map_table = pd.read_parquet(run / "map.parquet")
    assert len(map_table) == 2312 and map_table["is_mapped"].all()
    # One request per distinct prompt: 2,310 prompts for 2,312 instructions.
    assert chat_server.count() == summary["generation"]["requests"] == map_table["instruction"].nunique() == 2310
    scores = pd.read_parquet(run / "scores.parquet")
    assert scores["alignment_score"].notna().all()
    assert len(scores[scores["response"] == ""]) == 4
    full = (run / "pairs" / "full.jsonl").read_text().splitlines()
    assert len(full) == 2312


def test_the_map_and_its_view_keep_ultrafeedback_source(raw, tmp_path):
    from admap import view

    path, side, rows = raw
    run = tmp_path / "uf"
    argv = ["map", str(path), "--proxy-file", str(side), "--generator", "none", "--scorer", "rouge_l"]
    assert main([*argv, "--out", str(run), "--quiet", "--no-plot"]) == 0
    map_table = pd.read_parquet(run / "map.parquet")
    by_row = {n: r["source"] for n, r in enumerate(rows, start=1)}
    assert list(map_table["source"]) == [by_row[n] for n in map_table["source_row"]]
    summary = json.loads((run / "summary.json").read_text())
    scores = pd.read_parquet(run / "scores.parquet")
    modes = {m["key"]: m for m in view.build_payload(map_table, scores, summary, name="uf")["colourings"]}
    assert sorted(modes["source"]["names"]) == sorted({r["source"] for r in rows})
    # A dataset that names no source gets no such colouring.
    pairs = write_lines(tmp_path / "pairs.jsonl", [_alpaca(i) | {"proxy": f"Good {i}."} for i in range(4)])
    other = tmp_path / "pairs"
    assert (
        main(
            [
                "map",
                str(pairs),
                "--proxy-column",
                "proxy",
                "--generator",
                "none",
                "--scorer",
                "rouge_l",
                "--out",
                str(other),
                "--quiet",
                "--no-plot",
            ]
        )
        == 0
    )
    other_map = pd.read_parquet(other / "map.parquet")
    other_modes = view.build_payload(
        other_map,
        pd.read_parquet(other / "scores.parquet"),
        json.loads((other / "summary.json").read_text()),
        name="pairs",
    )["colourings"]
    assert "source" not in {m["key"] for m in other_modes}
