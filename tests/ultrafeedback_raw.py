"""A raw-UltraFeedback file with the real file's quirks, and the paper's rules re-implemented from
the authors' code (GitHub 01choco/Dataset-Cartography), for the tests to compare admap against.

The quirks, each as openbmb/UltraFeedback has it: rows repeated exactly; a prompt asked again with
other completions; an empty completion; two completions of one row with the same text and different
ratings; "N/A" aspect ratings; tied ratings; a row whose ratings are all equal; a row of three
completions; completions under principles other than helpfulness; ``source`` and ``models``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd

WORDS = (
    "river stone light paper garden music winter signal market bridge engine forest number planet letter "
    "window silver orange circle memory travel coffee harbor dragon pencil rocket castle mirror thunder "
    "valley copper island needle shadow meadow lantern puzzle anchor blanket canyon desert falcon glacier "
    "hammer jacket kettle ladder marble nectar oyster pepper quartz ribbon saddle tunnel velvet walnut "
    "yogurt zipper basket candle donkey feather ginger helmet insect jungle kitten lemon magnet noodle"
).split()
MODELS = ["gpt-4", "gpt-3.5-turbo", "llama-2-7b-chat", "alpaca-7b", "falcon-40b-instruct", "wizardlm-13b", "bard"]
SOURCES = ["evol_instruct", "flan_v2_niv2", "sharegpt", "ultrachat", "false_qa", "truthful_qa"]
OTHER_PRINCIPLES = ["honesty", "truthfulness", "verbalized_calibration", "harmlessness"]
ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def _sentence(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."


def _completion(rng: random.Random, proxy: str, principle: str, model: str, text: str | None = None) -> dict:
    """A completion whose closeness to the proxy and whose ratings both vary."""
    if text is None:
        overlap = rng.random()
        proxy_words = proxy.lower().rstrip(".").split()
        words = [
            rng.choice(proxy_words) if rng.random() < overlap else rng.choice(WORDS) for _ in range(rng.randint(6, 30))
        ]
        text = " ".join(words).capitalize() + "."
    ratings = {aspect: str(rng.randint(1, 5)) for aspect in ASPECTS}
    annotations = {
        aspect: {"Rating": rating, "Rationale": f"{aspect} rated {rating}."} for aspect, rating in ratings.items()
    }
    return {
        "model": model,
        "principle": principle,
        "custom_system_prompt": f"Answer with {principle} in mind.",
        "response": text,
        "annotations": annotations,
        "critique": "A critique.",
        "overall_score": float(rng.randint(2, 20)) / 2,
    }


def _score(completion: dict) -> None:
    """UltraFeedback's fine-grained score: the mean of the aspect ratings that are numbers."""
    rated = [float(a["Rating"]) for a in completion["annotations"].values() if a["Rating"] != "N/A"]
    completion["fine-grained_score"] = sum(rated) / len(rated)


def build_rows(seed: int = 14) -> tuple[list[dict], dict[str, str]]:
    """The rows, in file order, and one proxy response per distinct prompt."""
    rng = random.Random(seed)
    prompts = [f"Question {i}: {_sentence(rng, WORDS, rng.randint(4, 10))}" for i in range(40)]
    proxies = {prompt: _sentence(rng, WORDS, rng.randint(12, 30)) for prompt in prompts}

    def row(prompt: str, principles: list[str]) -> dict:
        models = rng.sample(MODELS, len(principles))
        completions = [_completion(rng, proxies[prompt], p, m) for p, m in zip(principles, models)]
        return {"source": rng.choice(SOURCES), "instruction": prompt, "models": models, "completions": completions}

    rows = []
    for index, prompt in enumerate(prompts):
        principles = ["helpfulness"] * 4
        if index % 4 == 3:  # a quarter of the rows mix in other principles, as UltraFeedback does
            for position in rng.sample(range(4), rng.randint(1, 4)):
                principles[position] = rng.choice(OTHER_PRINCIPLES)
        if index == 7:  # a row of three completions: not the authors' four of one principle
            principles = principles[:3]
        rows.append(row(prompt, principles))

    rows[2]["completions"][1]["response"] = ""  # an empty completion: a real, bad answer
    # Two completions of one row with the same text and different ratings.
    rows[5]["completions"][3]["response"] = rows[5]["completions"][0]["response"]
    rows[5]["completions"][0]["annotations"]["helpfulness"]["Rating"] = "5"
    rows[5]["completions"][3]["annotations"]["helpfulness"]["Rating"] = "1"
    for r, c in ((9, 0), (12, 2), (20, 1)):  # "N/A" aspect ratings
        rows[r]["completions"][c]["annotations"]["honesty"]["Rating"] = "N/A"
    for completion in rows[14]["completions"]:  # every completion rated alike: no pair
        for aspect in ASPECTS:
            completion["annotations"][aspect]["Rating"] = "4"
    rows[17]["completions"][2]["annotations"] = json.loads(json.dumps(rows[17]["completions"][0]["annotations"]))
    for r in rows:
        for completion in r["completions"]:
            _score(completion)

    # Prompts asked again with other completions (UltraFeedback holds such rows).
    again = [row(prompts[i], ["helpfulness"] * 4) for i in (1, 4, 11, 23, 30)]
    for r in again:
        for completion in r["completions"]:
            _score(completion)
    # Exact repeats of earlier rows, later in the file.
    repeats = [json.loads(json.dumps(rows[i])) for i in (0, 3, 8, 15, 22, 31)]
    for extra in again + repeats:
        rows.insert(rng.randint(len(rows) // 2, len(rows)), extra)
    return rows, proxies


def write_fixture(directory: Path, seed: int = 14) -> tuple[Path, Path, list[dict]]:
    """``ultrafeedback.jsonl``, ``proxies.jsonl`` (one per distinct prompt, keyed by instruction
    text, as the authors' ``gpt_inference`` is per prompt) and the rows."""
    rows, proxies = build_rows(seed)
    data = directory / "ultrafeedback.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    side = directory / "proxies.jsonl"
    side.write_text("".join(json.dumps({"instruction": p, "proxy": t}) + "\n" for p, t in proxies.items()))
    return data, side, rows


# ---------------------------------------------------------------- the authors' rules


def authors_data_points(rows: list[dict], *, principle: str | None = None) -> list[tuple[int, dict]]:
    """``(file row, record)`` of each data point: gpt-inference.py's ``check_helpfulness`` when
    ``principle`` is given, then every row its own data point. admap's one departure, asked for by
    its users: an exact repeat of a row is one data point, not two."""
    numbered = list(enumerate(rows, start=1))
    if principle is not None:
        numbered = [(n, r) for n, r in numbered if sum(c["principle"] == principle for c in r["completions"]) == 4]
    seen, points = set(), []
    for number, record in numbered:
        key = json.dumps(record, sort_keys=True)
        if key not in seen:
            seen.add(key)
            points.append((number, record))
    return points


def authors_scores(points: list[tuple[int, dict]], proxies: dict[str, str], model) -> list[list[float]]:
    """scores/embedding.py: each completion's cosine to the proxy, one ``encode`` per pair."""
    from sklearn.metrics.pairwise import cosine_similarity

    scores = []
    for _, record in points:
        golden = proxies[record["instruction"]]
        row_scores = []
        for completion in record["completions"]:
            embeddings = model.encode([golden, completion["response"]])
            row_scores.append(float(cosine_similarity([embeddings[0]], [embeddings[1]])[0][0]))
        scores.append(row_scores)
    return scores


def authors_regions(points: list[tuple[int, dict]], scores: list[list[float]]) -> dict[str, list[int]]:
    """calculate/variance.py, correlations/cosine.py and split/split_data.py's
    ``process_and_split_data_no_overlap``: the file rows of each region."""
    data = pd.DataFrame(
        {
            "row": [number for number, _ in points],
            "score_variance": [np.var(s) for s in scores],
            "average_score": [np.mean(s) for s in scores],
        }
    )
    data = data.dropna(subset=["score_variance"])
    data_sorted = data.sort_values(by="score_variance")
    total_len = len(data_sorted)
    split2 = 2 * total_len // 3
    high_variance = data_sorted.iloc[split2:]
    low_variance = data_sorted.iloc[:split2]
    data_sorted2 = low_variance.sort_values(by="average_score")
    split3 = len(data_sorted2) // 2
    return {
        "high_variance": sorted(high_variance["row"]),
        "high_mean": sorted(data_sorted2.iloc[split3:]["row"]),
        "low_mean": sorted(data_sorted2.iloc[:split3]["row"]),
    }


def authors_pairs(points: list[tuple[int, dict]]) -> list[tuple[int, str, str]]:
    """split/data-process-full.py with ``type: fine``: per row, a dict from response text to its
    fine-grained score (the last one written wins), then every pair of its keys with unequal scores."""
    pairs = []
    for number, item in points:
        response = {}
        for completion in item["completions"]:
            response[completion["response"]] = completion["fine-grained_score"]
        keys = list(response.keys())
        for j in range(len(keys)):
            for k in range(j + 1, len(keys)):
                key, key2 = keys[j], keys[k]
                value, value2 = response[key], response[key2]
                if value > value2:
                    pairs.append((number, key, key2))
                elif value < value2:
                    pairs.append((number, key2, key))
    return pairs
