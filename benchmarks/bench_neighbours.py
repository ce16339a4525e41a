"""Near duplicates and contamination found on planted data: precision and recall, by threshold.

Background: the first human turns of the HH-RLHF harmless-base test split (real prompts, distinct
texts), first checked alone; what it holds at the default thresholds is reported (real near
duplicates and real overlap with MT-Bench and Evol-Instruct), and whatever is flagged there at the
loosest thresholds swept is taken out, so that every later flag on a background prompt is a false
one. Planted (tests/data/neighbours/planted.jsonl and the shipped sets):

- near duplicates: 16 hand-written paraphrase pairs, and 16 background prompts copied with their case,
  punctuation and spacing changed;
- contamination: 20 MT-Bench first turns and 20 Evol-Instruct prompts verbatim, 10 of them inside a
  longer request, and 16 hand-written paraphrases of MT-Bench first turns.

The instructions and prompts are embedded once (all-MiniLM-L6-v2 by default, through the embedding
cache); the thresholds are swept on the same neighbours. Writes ``neighbours.csv`` (every threshold),
``neighbours.md`` and ``neighbours.json`` to ``--out``.

    python benchmarks/bench_neighbours.py --out results/neighbours
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from admap import knn, layout
from admap import neighbours as stage
from admap.commands.neighbours import NeighboursConfig, nearest_prompts
from admap.embed import EmbeddingOptions
from admap.embedding_store import embedded_texts
from admap.inputs import InputOptions
from admap.models import DEFAULT_EMBEDDING_MODEL
from admap.provenance import machine_line, provenance

ROOT = Path(__file__).resolve().parents[1]
HH_RLHF_TEST_FILE = ROOT / "tests" / "data" / "hh_rlhf" / "harmless-base-test.jsonl.gz"
PLANTED = ROOT / "tests" / "data" / "neighbours" / "planted.jsonl"
NEAR_DUPLICATE_THRESHOLDS = (0.85, 0.9, 0.92, 0.95, 0.97)
CONTAMINATION_THRESHOLDS = (0.75, 0.8, 0.85, 0.9, 0.95)
DEFAULT_NEAR_DUPLICATE = NeighboursConfig.near_duplicate_threshold
DEFAULT_CONTAMINATION = NeighboursConfig.contamination_threshold
EMBEDDED_COPY = "I need help with an assignment. {prompt} Please answer in detail and show your work."


def first_human_turns(path: Path) -> list[str]:
    """The distinct first user turns of a chat dataset, in order."""
    instructions = InputOptions(dataset=str(path), skip_invalid=True).read(progress=False).instructions
    turns = []
    for messages in instructions["prompt_messages"]:
        users = [m["content"] for m in json.loads(messages) if m.get("role") == "user" and m.get("content")]
        if users:
            turns.append(users[0].strip())
    return list(dict.fromkeys(turns))


def varied(text: str) -> str:
    """The same prompt typed differently: lower case, no final punctuation, doubled spaces."""
    return re.sub(r"[.?!]+$", "", text.lower()).replace(" ", "  ", 2)


def planted_rows(background: list[str], seed: int) -> pd.DataFrame:
    """The planted instructions: ``text``, ``kind``, ``pair`` (near duplicates: the pair they belong to)
    and ``eval_key`` (contamination: ``set:id`` of the prompt they copy)."""
    rng = np.random.default_rng(seed)
    hand = pd.read_json(PLANTED, lines=True, dtype={"eval_id": str})
    rows = []
    for row in hand.itertuples():
        if row.kind == "near_duplicate":
            rows.append({"text": row.text, "kind": "near_duplicate", "pair": f"hand-{int(row.pair)}"})
        else:
            rows.append({"text": row.text, "kind": "eval_paraphrase", "eval_key": f"{row.eval_set}:{row.eval_id}"})
    for i, position in enumerate(rng.choice(len(background), 16, replace=False)):
        rows.append({"text": varied(background[position]), "kind": "near_duplicate", "pair": f"copy-{i}"})
        rows.append({"text": background[position], "kind": "near_duplicate_original", "pair": f"copy-{i}"})
    paraphrased = {key for key in hand["eval_set"].astype(str) + ":" + hand["eval_id"].astype(str)}
    for name in ("mt_bench", "evol_instruct"):
        prompts = stage.read_prompts(name)
        prompts = prompts[~(name + ":" + prompts["eval_id"]).isin(paraphrased)]
        for j, prompt in enumerate(prompts.sample(20, random_state=seed).itertuples()):
            text = EMBEDDED_COPY.format(prompt=prompt.eval_prompt) if j < 5 else prompt.eval_prompt
            kind = "eval_embedded_copy" if j < 5 else "eval_verbatim"
            rows.append({"text": text, "kind": kind, "eval_key": f"{name}:{prompt.eval_id}"})
    return pd.DataFrame(rows)


def flags(vectors: np.ndarray, prompt_vectors: np.ndarray, k: int = 10):
    """The neighbours and the nearest prompts, searched once for every threshold."""
    similarities, positions = knn.self_neighbours(vectors, k)
    return similarities, positions, nearest_prompts(vectors, prompt_vectors)


def sweep(data: pd.DataFrame, vectors: np.ndarray, prompts: pd.DataFrame, prompt_vectors: np.ndarray) -> pd.DataFrame:
    ids = np.array([f"i{i}" for i in range(len(data))], dtype=object)
    texts = data["text"].tolist()
    similarities, positions, (prompt_similarity, prompt_position) = flags(vectors, prompt_vectors)
    rows = []
    pairs = {pair: np.asarray(rows) for pair, rows in data[data["pair"].notna()].groupby("pair").groups.items()}
    for threshold in NEAR_DUPLICATE_THRESHOLDS:
        groups = stage.near_duplicate_groups(ids, similarities, positions, threshold)
        group_of = dict(zip(groups["instruction_id"], groups["group"]))
        found = [
            len({group_of.get(ids[p]) for p in members}) == 1 and ids[members[0]] in group_of
            for members in pairs.values()
        ]
        flagged = set(groups["instruction_id"])
        planted = set(ids[data["pair"].notna().to_numpy()])
        rows.append(
            {
                "measure": "near duplicates",
                "threshold": threshold,
                "planted": len(pairs),
                "found": int(sum(found)),
                "recall": float(np.mean(found)),
                "flagged": len(flagged),
                "false_flags": len(flagged - planted),
                "precision": len(flagged & planted) / max(len(flagged), 1),
            }
        )
    planted_contamination = data["eval_key"].notna().to_numpy()
    prompt_keys = (prompts["eval_set"] + ":" + prompts["eval_id"]).to_numpy()
    for threshold in CONTAMINATION_THRESHOLDS:
        table = stage.contamination_table(
            ids, texts, prompts, prompt_similarity, prompt_position, similarity_threshold=threshold, ngram_threshold=0.5
        )
        flagged = table["is_contaminated"].to_numpy()
        # Found: flagged, and matched to the prompt it copies by either measure.
        matched = (prompt_keys[np.clip(prompt_position, 0, None)] == data["eval_key"].to_numpy()) | (
            (table["ngram_eval_set"] + ":" + table["ngram_eval_id"]).to_numpy() == data["eval_key"].to_numpy()
        )
        for kind in ("eval_verbatim", "eval_embedded_copy", "eval_paraphrase", "all"):
            of_kind = planted_contamination if kind == "all" else (data["kind"] == kind).to_numpy()
            rows.append(
                {
                    "measure": f"contamination: {kind.removeprefix('eval_').replace('_', ' ')}",
                    "threshold": threshold,
                    "planted": int(of_kind.sum()),
                    "found": int((flagged & matched & of_kind).sum()),
                    "recall": float((flagged & matched & of_kind).sum() / max(of_kind.sum(), 1)),
                    "flagged": int(flagged.sum()),
                    "false_flags": int((flagged & ~planted_contamination).sum()),
                    "precision": float((flagged & planted_contamination).sum() / max(flagged.sum(), 1)),
                }
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--background", type=int, default=0, help="first N background prompts (0: all)")
    parser.add_argument("--model", default=DEFAULT_EMBEDDING_MODEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for neighbours.csv, neighbours.md and neighbours.json")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_neighbours.py", *(sys.argv[1:] if argv is None else argv)])

    background = first_human_turns(HH_RLHF_TEST_FILE)
    if args.background:
        background = background[: args.background]
    prompts = pd.concat([stage.read_prompts(name) for name in stage.EVALUATION_SETS], ignore_index=True)
    vectors, _ = embedded_texts(
        background + prompts["eval_prompt"].tolist(),
        model=args.model,
        options=EmbeddingOptions(),
        device="cpu",
        batch_size=None,
        progress=False,
    )
    background_vectors, prompt_vectors = vectors[: len(background)], vectors[len(background) :]

    # The background alone, at the default thresholds: what it holds for real, then taken out.
    ids = np.array([f"b{i}" for i in range(len(background))], dtype=object)
    similarities, positions, (prompt_similarity, prompt_position) = flags(background_vectors, prompt_vectors)
    real_groups = stage.near_duplicate_groups(ids, similarities, positions, DEFAULT_NEAR_DUPLICATE)
    real_contamination = stage.contamination_table(
        ids,
        background,
        prompts,
        prompt_similarity,
        prompt_position,
        similarity_threshold=DEFAULT_CONTAMINATION,
        ngram_threshold=0.5,
    )
    real_contamination = real_contamination[real_contamination["is_contaminated"]]
    position_of = {i: n for n, i in enumerate(ids)}
    examples_groups = [
        [background[position_of[i]] for i in real_groups.loc[real_groups["group"] == g, "instruction_id"]]
        for g in real_groups["group"].unique()[:5]
    ]
    examples_contamination = [
        {
            "instruction": background[position_of[row.instruction_id]],
            "eval": f"{row.eval_set} {row.eval_id}",
            "eval_prompt": row.eval_prompt,
            "similarity": round(float(row.similarity), 3),
            "ngram_overlap": round(float(row.ngram_overlap), 3),
        }
        for row in real_contamination.itertuples()
    ]
    # Taken out at the loosest thresholds swept, so that any flag on the background at any threshold is false.
    loose_groups = stage.near_duplicate_groups(ids, similarities, positions, min(NEAR_DUPLICATE_THRESHOLDS))
    loose_contamination = stage.contamination_table(
        ids,
        background,
        prompts,
        prompt_similarity,
        prompt_position,
        similarity_threshold=min(CONTAMINATION_THRESHOLDS),
        ngram_threshold=0.5,
    )
    drop = set(loose_groups["instruction_id"]) | set(
        loose_contamination.loc[loose_contamination["is_contaminated"], "instruction_id"]
    )
    clean = [text for i, text in zip(ids, background) if i not in drop]
    # The near-duplicate copies' originals move from the background into the planted rows.
    planted = planted_rows(clean, args.seed)
    originals = set(planted.loc[planted["kind"] == "near_duplicate_original", "text"])
    planted.loc[planted["kind"] == "near_duplicate_original", "kind"] = "near_duplicate"
    clean = [text for text in clean if text not in originals]
    data = pd.concat([pd.DataFrame({"text": clean, "kind": "background"}), planted], ignore_index=True)
    data = data.reindex(columns=["text", "kind", "pair", "eval_key"])
    data_vectors, _ = embedded_texts(
        data["text"].tolist(),
        model=args.model,
        options=EmbeddingOptions(),
        device="cpu",
        batch_size=None,
        progress=False,
    )
    table = sweep(data, data_vectors, prompts, prompt_vectors)
    # What each threshold flags among the real prompts alone (mostly true rephrasings on reading them).
    alone = {
        ("near", t): len(stage.near_duplicate_groups(ids, similarities, positions, t))
        for t in NEAR_DUPLICATE_THRESHOLDS
    } | {
        ("contamination", t): int(
            stage.contamination_table(
                ids,
                background,
                prompts,
                prompt_similarity,
                prompt_position,
                similarity_threshold=t,
                ngram_threshold=0.5,
            )["is_contaminated"].sum()
        )
        for t in CONTAMINATION_THRESHOLDS
    }
    table["background_alone_flagged"] = [
        alone[("near" if m == "near duplicates" else "contamination", t)]
        for m, t in zip(table["measure"], table["threshold"])
    ]

    # The semantic view's layouts on the real prompts: time and the share of 10-nearest neighbourhoods kept.
    layouts = []
    for method in ("pca", "umap") if layout.umap_installed() else ("pca",):
        start = time.perf_counter()
        xy = layout.semantic_layout(background_vectors, method)
        seconds = time.perf_counter() - start
        layouts.append(
            {
                "method": method,
                "seconds": seconds,
                "neighbourhood_kept": layout.neighbourhood_kept(background_vectors, xy),
            }
        )

    record = {
        **provenance(command),
        "model": args.model,
        "background": len(background),
        "background_near_duplicate_groups": int(real_groups["group"].nunique()),
        "background_in_near_duplicate_groups": int(len(real_groups)),
        "background_contaminated": int(len(real_contamination)),
        "background_near_duplicate_examples": examples_groups,
        "background_contamination": examples_contamination,
        "clean_background": len(clean),
        "planted": planted["kind"].value_counts().to_dict(),
        "rows": table.to_dict(orient="records"),
        "layouts": layouts,
    }
    lines = [
        "# Near duplicates and contamination on planted data",
        "",
        f"Command: `{command}`  ",
        f"Data: {len(background):,} distinct first human turns of the HH-RLHF harmless-base test split; "
        f"{len(clean):,} kept as the background after taking out every prompt flagged there at the loosest "
        f"thresholds swept (cosine {min(NEAR_DUPLICATE_THRESHOLDS):g}, contamination cosine "
        f"{min(CONTAMINATION_THRESHOLDS):g}) and the near-duplicate originals; {len(planted)} planted instructions  ",
        f"Model: {args.model}; machine: {machine_line()}",
        "",
        f"Found in the background at the defaults (cosine ≥ {DEFAULT_NEAR_DUPLICATE:g}; contamination cosine ≥ "
        f"{DEFAULT_CONTAMINATION:g} or ≥ 50% of "
        f"8-grams): {record['background_near_duplicate_groups']} near-duplicate groups holding "
        f"{record['background_in_near_duplicate_groups']} prompts, {record['background_contaminated']} "
        "contaminated prompts (neighbours.json lists them).",
        "",
        "| measure | threshold | planted | found | recall | flagged | false flags | precision | flagged among the "
        f"{len(background):,} real prompts alone |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.measure} | {row.threshold:g} | {row.planted} | {row.found} | {row.recall:.2f} | {row.flagged} "
            f"| {row.false_flags} | {row.precision:.2f} | {row.background_alone_flagged} |"
        )
    lines += [
        "",
        f"The semantic view's layout of the {len(background):,} real prompts (the first call includes UMAP's "
        "compilation by numba):",
        "",
        "| layout | seconds | 10-nearest neighbourhoods kept |",
        "|---|---|---|",
        *(f"| {r['method']} | {r['seconds']:.1f} | {r['neighbourhood_kept']:.1%} |" for r in layouts),
    ]
    if not layout.umap_installed():
        lines.append("\numap-learn is not installed here: only PCA was measured (pip install 'admap[layout]').")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "neighbours.csv", index=False)
        (out / "neighbours.md").write_text(report)
        (out / "neighbours.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
