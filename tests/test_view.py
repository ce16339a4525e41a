"""admap view: the page's data, its escaping, and the command. The page in a real browser: test_view_browser.py."""

import base64
import hashlib
import json
import re
import threading
import urllib.request
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from admap import view
from admap.cli import main
from admap.commands.view import ViewConfig, run_view
from admap.run_folder import MapRun, Neighbourhoods
from tests.runs import map_without_models

HOSTILE = (
    "</script><script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    "<!-- <script>",
    "]]> &amp; \u2028 \"quoted\" 'single'",
)


def small_run(instructions: int = 6, responses: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A map table, scores table and summary as `admap map` writes them; the last instruction is unmapped."""
    rng = np.random.default_rng(0)
    ids = [f"ins-{k}" for k in range(instructions)]
    mapped = np.arange(instructions) < instructions - 1
    map_table = pd.DataFrame(
        {
            "instruction_id": ids,
            "instruction": [f"instruction {k}: {HOSTILE[k % len(HOSTILE)]}" for k in range(instructions)],
            "proxy_response": [f"proxy {k}" for k in range(instructions)],
            "n_responses": responses,
            "mean_score": np.where(mapped, rng.uniform(0.3, 0.9, instructions), np.nan),
            "score_variance": np.where(mapped, rng.uniform(0.001, 0.05, instructions), np.nan),
            "is_mapped": mapped,
            "region": np.where(mapped, ["high_mean", "low_mean", "high_variance"] * (instructions // 3), "unmapped"),
            "mean_rating": rng.uniform(1, 5, instructions),
            "unmapped_reason": [None] * (instructions - 1) + ["only 1 scored response(s)"],
        }
    )
    map_table["score_std"] = np.sqrt(map_table["score_variance"])
    # Responses in reverse order, so that grouping them by instruction is tested.
    rows = [
        {
            "instruction_id": ids[k],
            "response_id": f"ins-{k}-{j}",
            "response": f"response {j} of {k} {HOSTILE[j % len(HOSTILE)]}",
            "model": f"model-{j}",
            "rating": float(j + 1),
            "alignment_score": float(rng.uniform()),
        }
        for k in reversed(range(instructions))
        for j in range(responses)
    ]
    scores = pd.DataFrame(rows)
    scores["response_chars"] = scores["response"].str.len()
    scores["response_words"] = scores["response"].str.split().str.len()
    summary = {
        "created": "2025-01-01T00:00:00+00:00",
        "config": {"input": {"dataset": "data/prefs.jsonl"}, "length_debias": False},
        "scorer": {"name": "reference", "label": "reference (all-MiniLM-L6-v2)", "model": "all-MiniLM-L6-v2"},
        "thresholds": {"method": "paper", "variance": 0.02, "mean": float("inf")},
    }
    return map_table, scores, summary


def test_payload_holds_every_instruction_with_its_responses_in_order():
    map_table, scores, summary = small_run()
    scores["response_id"] = "r-" + scores["response_id"]  # not <instruction_id>-<k>: carried, not rebuilt
    payload = view.build_payload(map_table, scores, summary)
    instructions, details = payload["instructions"], payload["details"]
    responses = details["responses"]
    assert instructions["id"] == map_table["instruction_id"].tolist()
    assert details["text"] == map_table["instruction"].tolist() and details["whole"].all()
    for i, instruction_id in enumerate(instructions["id"]):
        rows = range(responses["start"][i], responses["start"][i + 1])
        expected = scores[scores["instruction_id"] == instruction_id]
        assert [responses["id"][r] for r in rows] == sorted(expected["response_id"])
        assert [responses["text"][r] for r in rows] == expected.sort_values("response_id")["response"].tolist()
    assert responses["start"][-1] == len(scores)
    # The unmapped instruction has no position; thresholds that are not finite become null.
    assert np.isnan(instructions["x"][-1]) and np.isnan(instructions["y"][-1])
    assert instructions["x"][0] == pytest.approx(map_table["score_variance"][0], rel=1e-5)
    assert payload["meta"]["thresholds"] == {"variance": 0.02, "mean": None}
    assert payload["meta"]["title"] == "Alignment Data Map — prefs.jsonl"
    assert payload["meta"]["scorer"] == "reference (all-MiniLM-L6-v2)"
    assert payload["meta"]["on_map"] == 5 and payload["meta"]["text_limit"] is None
    assert payload["meta"]["run_dir"] == payload["meta"]["name"] == "admap"  # no folder given: the name


def test_colourings_region_model_rating_and_suspects():
    map_table, scores, summary = small_run()
    suspects = pd.DataFrame(
        {
            "instruction_id": ["ins-0", "ins-1", "ins-1", "ins-2"],
            "chosen_id": ["ins-0-0", "ins-1-0", "ins-1-1", "ins-2-0"],
            "rejected_id": ["ins-0-1", "ins-1-2", "ins-1-2", "ins-2-1"],
            "margin": [-0.2, 0.1, 0.3, np.nan],
            "suspicion_score": [1.5, -0.5, -1.0, np.nan],
            "is_suspect": [True, False, False, False],
        }
    )
    other = view.OtherRun("rouge_l", pd.Series({"ins-0": "low_mean"}))
    payload = view.build_payload(map_table, scores, summary, suspects=suspects, others=[other])
    modes = {mode["key"]: mode for mode in payload["colourings"]}
    assert list(modes) == ["region", "scorer_0", "suspect", "model", "mean_rating"]
    region = modes["region"]
    assert region["names"][:3] == ["high_mean — aligned", "low_mean — misaligned", "high_variance — partially aligned"]
    assert [region["names"][c].split(" ")[0] for c in region["codes"]] == map_table["region"].tolist()
    scorer = modes["scorer_0"]
    assert scorer["label"] == "region by scorer rouge_l"
    assert [scorer["names"][c] for c in scorer["codes"]][:2] == ["low_mean — misaligned", "not in that run"]
    flags = [modes["suspect"]["names"][c] for c in modes["suspect"]["codes"]]
    assert flags[:4] == ["suspect pair", "pairs agree", "no scored pairs", "no scored pairs"]
    best = scores.sort_values("alignment_score", ascending=False).drop_duplicates("instruction_id")
    expected = best.set_index("instruction_id")["model"].reindex(map_table["instruction_id"]).tolist()
    assert [modes["model"]["names"][c] for c in modes["model"]["codes"]] == expected
    assert modes["mean_rating"]["kind"] == "continuous"
    assert payload["suspects"]["instruction"] == [0] and payload["suspects"]["chosen"] == ["ins-0-0"]


def test_semantic_coordinates_and_neighbourhood_colourings_where_neighbours_ran(tmp_path):
    map_table, scores, summary = small_run()
    assert view.build_payload(map_table, scores, summary)["semantic"] is None
    ids = map_table["instruction_id"].tolist()
    # The layout lacks ins-2; ins-0 and ins-1 are one near-duplicate group; ins-4 copies an MT-Bench prompt.
    layout = pd.DataFrame(
        {"instruction_id": [i for i in ids if i != "ins-2"], "semantic_x": [0.5, -1.0, 2.0, 3.0, 4.0]}
    ).assign(semantic_y=lambda table: -table["semantic_x"])
    neighbourhoods = Neighbourhoods(
        folder=tmp_path,
        summary={"model": "all-MiniLM-L6-v2", "layout": {"method": "umap", "neighbourhood_kept": 0.62}},
        near_duplicates=pd.DataFrame({"instruction_id": ["ins-0", "ins-1"], "is_kept": [True, False]}),
        contamination=pd.DataFrame(
            {"instruction_id": ids, "eval_set": "mt_bench", "is_contaminated": [i == "ins-4" for i in ids]}
        ),
        layout=layout,
    )
    payload = view.build_payload(map_table, scores, summary, neighbourhoods=neighbourhoods)
    semantic = payload["semantic"]
    np.testing.assert_array_equal(semantic["x"], [0.5, -1.0, np.nan, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(semantic["y"], [-0.5, 1.0, np.nan, -2.0, -3.0, -4.0])
    assert (semantic["method"], semantic["model"], semantic["neighbourhood_kept"]) == ("umap", "all-MiniLM-L6-v2", 0.62)
    modes = {mode["key"]: mode for mode in payload["colourings"]}
    duplicate = [modes["near_duplicate"]["names"][c] for c in modes["near_duplicate"]["codes"]]
    assert duplicate[:3] == [
        "kept one of a near-duplicate group",
        "near duplicate (left out by --drop-near-duplicates)",
        "no near duplicate",
    ]
    contaminated = [modes["contamination"]["names"][c] for c in modes["contamination"]["codes"]]
    assert contaminated == ["not contaminated"] * 4 + ["contaminated: mt_bench", "not contaminated"]
    # Without a layout (`admap neighbours --layout none`): the colourings, no semantic view.
    without = view.build_payload(map_table, scores, summary, neighbourhoods=replace(neighbourhoods, layout=None))
    assert without["semantic"] is None and "near_duplicate" in {mode["key"] for mode in without["colourings"]}


def dynamics_margins(ids: list[str]) -> pd.DataFrame:
    """pair_margins.parquet over 3 recording points: two pairs of the first instruction, one of each other."""
    pairs = [(ids[0], f"{ids[0]}-0", f"{ids[0]}-1"), (ids[0], f"{ids[0]}-0", f"{ids[0]}-2")]
    pairs += [(i, f"{i}-0", f"{i}-1") for i in ids[1:]]
    return pd.DataFrame(
        [
            {"instruction_id": i, "chosen_id": c, "rejected_id": r, "epoch": step / 6, "step": step, "margin": margin}
            for k, (i, c, r) in enumerate(pairs)
            for step, margin in zip((2, 4, 6), (0.5 * k - 1, k - 2.0, 0.3 * k * (-1) ** k))
        ]
    )


def test_dynamics_layout_and_colourings_where_margins_are_given():
    from admap.dynamics import instruction_dynamics, pair_dynamics

    map_table, scores, summary = small_run()
    assert view.build_payload(map_table, scores, summary)["dynamics"] is None
    ids = map_table["instruction_id"].tolist()
    # ins-3 was not trained on (not selected); ins-5, unmapped, was.
    pairs = pair_dynamics(dynamics_margins([i for i in ids if i != "ins-3"]))
    payload = view.build_payload(map_table, scores, summary, dynamics=pairs)
    expected = instruction_dynamics(pairs).set_index("instruction_id").reindex(ids)
    dynamics = payload["dynamics"]
    assert np.isnan(dynamics["x"][3]) and np.isnan(dynamics["y"][3]) and dynamics["n_pairs"][3] == 0
    for k in (0, 1, 2, 4, 5):
        assert dynamics["x"][k] == pytest.approx(expected["variability"].iloc[k], rel=1e-5)
        assert dynamics["y"][k] == pytest.approx(expected["confidence"].iloc[k], rel=1e-5)
        assert dynamics["correctness"][k] == pytest.approx(expected["correctness"].iloc[k], rel=1e-5)
    assert dynamics["n_pairs"][:2].tolist() == [2, 1]
    assert (dynamics["pairs"], dynamics["points"], dynamics["instructions"]) == (6, 3, 5)
    modes = {mode["key"]: mode for mode in payload["colourings"]}
    region = modes["dynamics_region"]
    assert region["names"] == ["easy to learn", "ambiguous", "hard to learn", "no trained pairs"]
    names = {"easy": "easy to learn", "ambiguous": "ambiguous", "hard": "hard to learn"}
    assert [region["names"][c] for c in region["codes"]] == [
        "no trained pairs" if k == 3 else names[expected["region"].iloc[k]] for k in range(len(ids))
    ]
    confidence = modes["dynamics_confidence"]
    assert confidence["kind"] == "continuous" and np.isnan(confidence["values"][3])
    # The page embeds it, packed.
    assert '"dynamics":{"x":{"dtype":"float32","base64":' in view.render_html(payload)
    # Margins of another dataset name none of the page's instructions.
    with pytest.raises(ValueError, match="none of the 6 instructions shown has training dynamics"):
        view.build_payload(map_table, scores, summary, dynamics=pairs.assign(instruction_id="elsewhere"))


def test_admap_view_reads_the_pair_margins(tmp_path):
    rows = [
        {"instruction": f"question {k}", "proxy": f"answer {k}", "chosen": f"answer {k}, in full", "rejected": "no"}
        for k in range(6)
    ]
    run = map_without_models(rows, tmp_path)
    ids = pd.read_parquet(run / "map.parquet")["instruction_id"].tolist()
    dynamics_margins(ids).to_parquet(tmp_path / "pair_margins.parquet")
    assert main(["view", str(run), "--dynamics", str(tmp_path / "pair_margins.parquet"), "--quiet"]) == 0
    payload = view.read_page(run / "view.html")
    assert payload["dynamics"]["instructions"] == 6 and payload["dynamics"]["points"] == 3


def test_categorical_keeps_the_most_frequent_and_pools_the_rest():
    values = ["a"] * 5 + ["b"] * 3 + ["c", "d", None]
    mode = view.categorical("k", "label", values, limit=2)
    assert mode["names"] == ["a", "b", "other"]
    assert [mode["names"][c] for c in mode["codes"]] == ["a"] * 5 + ["b"] * 3 + ["other"] * 3
    assert mode["colours"][-1] == view.OTHER_COLOUR


@pytest.mark.parametrize("text", HOSTILE)
def test_json_in_the_page_cannot_end_its_script_element(text):
    embedded = view.embed_json({"response": text})
    assert not set("<>&") & set(embedded)
    assert json.loads(embedded) == {"response": text}


def test_the_page_written_in_parts_holds_the_payload(tmp_path):
    map_table, scores, summary = small_run()
    payload = view.build_payload(map_table, scores, summary)
    payload["details"]["text"][0] = HOSTILE[0]
    parts = list(view.embedded_json_parts(payload))
    assert len(parts) > 20  # a part per column, not one string
    page = view.write_view(payload, tmp_path / "view.html").read_text(encoding="utf-8")
    assert page == view.render_html(payload) and "@@ADMAP_" not in page
    back = view.read_page(tmp_path / "view.html")
    assert back["details"]["text"] == payload["details"]["text"]
    assert back["instructions"]["id"] == payload["instructions"]["id"]
    for key in ("x", "y", "n_responses"):
        np.testing.assert_array_equal(back["instructions"][key], payload["instructions"][key])
    codes = {mode["key"]: mode["codes"] for mode in back["colourings"] if "codes" in mode}
    np.testing.assert_array_equal(codes["region"], payload["colourings"][0]["codes"])


def test_packed_arrays_and_lines_round_trip():
    values = np.array([0.5, np.nan, -1e-7, 3.4e38], dtype=np.float32)
    back = json.loads(view.embed_json({"v": values, "ids": view.Lines(["a", "b c", ""])}), object_hook=view.unpacked)
    np.testing.assert_array_equal(back["v"], values)
    assert back["ids"] == ["a", "b c", ""]
    # Ids with a newline cannot be joined: they go as an array.
    assert json.loads(view.embed_json({"ids": view.Lines(["a\nb", "c"])}))["ids"] == ["a\nb", "c"]
    with pytest.raises(TypeError, match="packs"):
        view.embed_json({"v": np.arange(3, dtype=np.int64)})


def test_page_inlines_everything_and_escapes_hostile_text(tmp_path):
    map_table, scores, summary = small_run()
    summary["config"]["input"]["dataset"] = "<img src=x onerror=alert(3)>.jsonl"  # the page's title
    path = view.write_view(view.build_payload(map_table, scores, summary), tmp_path / "view.html")
    page = path.read_text(encoding="utf-8")
    # Exactly the page's three script elements (data, texts and code) and its one style: nothing injected.
    assert len(re.findall(r"<script", page, re.I)) == 3 and len(re.findall(r"</script", page, re.I)) == 3
    assert len(re.findall(r"<style", page, re.I)) == 1
    assert "<img" not in page
    assert "<title>Alignment Data Map — &lt;img src=x onerror=alert(3)&gt;.jsonl</title>" in page
    # Nothing to fetch: no element with a source or link, no URL.
    assert not re.search(r"<[^>]*\s(src|href)=", page) and "http://" not in page and "https://" not in page
    assert view.read_page(path)["details"]["text"] == map_table["instruction"].tolist()
    script = re.search(r"<script>(.*)</script>", page, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page and "default-src 'none'" in page and "connect-src" not in page
    # A served page has no texts of its own and may ask its own server, nothing else.
    served = view.render_html(view.build_payload(map_table, scores, summary, texts="served"))
    assert "default-src 'none'; connect-src 'self';" in served
    assert re.search(r'id="admap-details"></script>', served) and "response 0 of" not in served


def test_text_limit_shortens_only_the_longest_texts():
    lengths = [10, 20, 300, 5000]
    assert view.text_limit(lengths, 10_000) is None and view.text_limit(lengths, 0) is None
    limit = view.text_limit(lengths, 1000)
    assert sum(min(n, limit) for n in lengths) <= 1000 < sum(min(n, limit + 1) for n in lengths)
    assert limit > 300  # the short texts stay whole
    assert view.shorten("x" * 50, 10) == "x" * 10 + "…"
    assert view.shorten("short", 10) == "short"


def test_payload_respects_the_text_budget_and_max_points():
    map_table, scores, summary = small_run(instructions=30)
    payload = view.build_payload(map_table, scores, summary, max_points=12, seed=1, text_budget=600)
    ids = payload["instructions"]["id"]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert ids == [i for i in map_table["instruction_id"] if i in set(ids)]  # original order kept
    assert ids == view.build_payload(map_table, scores, summary, max_points=12, seed=1)["instructions"]["id"]
    responses = payload["details"]["responses"]
    assert responses["id"] is None  # <instruction_id>-<k>, rebuilt by the page
    assert responses["start"][-1] == len(scores[scores["instruction_id"].isin(ids)])
    limit = payload["meta"]["text_limit"]
    assert limit is not None and payload["meta"]["texts_shortened"] > 0 and payload["meta"]["seed"] == 1
    whole = payload["details"]["whole"].astype(bool)
    assert payload["meta"]["instructions_whole"] == whole.sum()
    by_id = scores.set_index("response_id")["response"]
    for i, instruction_id in enumerate(ids):
        rows = range(responses["start"][i], responses["start"][i + 1])
        texts = [responses["text"][r] for r in rows]
        originals = [by_id[f"{instruction_id}-{k}"] for k in range(len(texts))]
        assert texts == originals if whole[i] else all(len(t) <= limit + 1 for t in texts)
        assert responses["chars"][list(rows)].tolist() == [len(t) for t in originals]


def test_the_text_budget_keeps_suspects_and_boundaries_whole_first():
    """Of 402 instructions, the text budget keeps whole ones in order: the suspects (most suspicious first), then
    the nearest a region boundary alternating with a seeded sample; every other text is shortened."""
    map_table, scores, summary = small_run(instructions=402)
    summary["thresholds"] = {"method": "absolute", "variance": 0.025, "mean": 0.6}
    flagged = ["ins-7", "ins-250", "ins-333"]
    suspects = pd.DataFrame(
        {
            "instruction_id": flagged,
            "chosen_id": [f"{i}-0" for i in flagged],
            "rejected_id": [f"{i}-1" for i in flagged],
            "margin": [-0.3, -0.2, -0.1],
            "suspicion_score": [1.0, 3.0, 2.0],
            "is_suspect": True,
        }
    )
    table = map_table.reset_index(drop=True)
    priority = view.text_priority(table, suspects, summary["thresholds"], seed=42)  # the page's default
    assert sorted(priority.tolist()) == list(range(402))
    assert table["instruction_id"].iloc[priority[:3]].tolist() == ["ins-250", "ins-333", "ins-7"]
    distance = view.threshold_distance(table, summary["thresholds"])
    assert priority[3] == np.argmin(distance)  # then the nearest a boundary
    # Then the nearest a boundary, every other one a pick of the sample (far from any boundary, mostly).
    nearest = [k for k in np.argsort(distance, kind="stable").tolist() if k not in (7, 250, 333)][:5]
    assert set(nearest) <= set(priority[3:17].tolist())
    assert (distance[priority[3:13]] > np.sort(distance)[20]).sum() >= 3
    payload = view.build_payload(map_table, scores, summary, suspects=suspects, text_budget=20_000)
    whole = payload["details"]["whole"].astype(bool)
    assert 3 < whole.sum() < 402 and whole[[7, 250, 333]].all()
    # As far as half the budget goes, in priority order (one too long for what is left is passed over).
    assert whole[priority[:13]].all() and whole[priority[:201]].sum() > whole[priority[201:]].sum()
    texts = payload["details"]["text"]
    assert texts[250] == map_table["instruction"].iloc[250]
    assert payload["meta"]["text_limit"] is not None
    # Everything in the page, whole or shortened, stays within the budget.
    inline = [*texts, *payload["details"]["proxy"], *payload["details"]["responses"]["text"]]
    assert sum(len(t) for t in inline if t) <= 20_000 + payload["meta"]["texts_shortened"]


def test_admap_map_writes_the_view_and_admap_view_rewrites_it(tmp_path):
    rows = [
        {
            "instruction": f"question {k} <b>bold</b>",
            "proxy": f"the answer to question {k}",
            "chosen": f"the answer to question {k}, in full",
            "rejected": f"no idea about {k} </script>",
        }
        for k in range(6)
    ]
    run = map_without_models(rows, tmp_path)
    assert "question 5 <b>bold</b>" in view.read_page(run / "view.html")["details"]["text"]
    assert json.loads((run / "summary.json").read_text())["timings_s"]["view"] >= 0
    other = map_without_models(rows, tmp_path, scorer="annotation", name="other")
    out = tmp_path / "page" / "map.html"
    assert main(["view", str(run), "--compare", str(other), "--out", str(out), "--max-points", "4", "--quiet"]) == 0
    payload = view.read_page(out)
    assert len(payload["instructions"]["id"]) == 4
    # The run folder as each command was given it: the page's `admap select` command lines name it.
    assert (payload["meta"]["name"], payload["meta"]["run_dir"]) == ("run", str(run))
    assert view.read_page(run / "view.html")["meta"]["run_dir"] == str(run)
    assert [m["label"] for m in payload["colourings"]][:2] == ["region", "region by scorer annotation"]


def test_a_page_redrawn_in_place_leaves_the_run_readable(tmp_path):
    rows = [
        {"instruction": f"question {k}", "proxy": f"answer {k}", "chosen": f"answer {k}, in full", "rejected": "no"}
        for k in range(6)
    ]
    run = map_without_models(rows, tmp_path)
    before = (run / "view.html").stat().st_size
    # The diagnosis adds its suspect flags to the page: it changes size where the run wrote it.
    assert main(["diagnose", str(run), "--quiet"]) == 0
    assert main(["view", str(run), "--quiet"]) == 0
    assert (run / "view.html").stat().st_size != before
    assert "view.html" not in json.loads((run / "summary.json").read_text())["files"]
    assert MapRun.open(run).run_id and main(["select", str(run), "--quiet"]) == 0
    assert main(["view", str(run), "--quiet"]) == 0


def test_no_view_flag_and_bad_values(tmp_path):
    with pytest.raises(ValueError, match="max_points"):
        ViewConfig(run_dir="x", max_points=-1)
    assert main(["view", str(tmp_path / "missing"), "--quiet"]) == 2
    rows = [{"instruction": "q", "proxy": "a", "chosen": "a b", "rejected": "c"}] * 1
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(rows[0]) + "\n")
    argv = ["map", str(data), "--scorer", "rouge_l", "--proxy-column", "proxy", "--generator", "none"]
    assert main([*argv, "--out", str(tmp_path / "run"), "--quiet", "--no-plot", "--no-view"]) == 0
    assert not (tmp_path / "run" / "view.html").exists()
    assert run_view(ViewConfig(run_dir=str(tmp_path / "run"))).name == "view.html"


def test_server_serves_the_page_on_loopback(tmp_path):
    page = tmp_path / "view.html"
    page.write_text("<!doctype html><title>t</title>")
    with view.make_server(page, 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/view.html", timeout=10) as response:
            assert response.read() == page.read_bytes()
        server.shutdown()
        thread.join(timeout=10)
