"""A learned-preference score: a pairwise (Bradley–Terry) model fitted to the dataset's own labels,
cross-fitted over folds of instructions so that every response is scored out of sample.

Similarity to a proxy response points the wrong way whenever the dataset's idea of "better" is not
the proxy's (on HH-RLHF harmless the helpful proxy resembles the compliant, harmful answer). Here
the direction comes from the labels themselves: each response gets a feature vector ``f`` (a
sentence embedding, or a causal LM's mean-pooled last hidden state), and
``P(a preferred to b) = sigmoid(w · (f_a - f_b))``, an L2-regularised logistic regression without
intercept on feature differences, so that the model has no preference for either side of a pair.
Instructions are split into K folds; the model that scores a fold's responses is fitted on the
pairs of the other folds only, so no response is scored by a model that saw its instruction. The
utilities ``w · f`` are therefore honest out-of-sample scores, which is what confident learning
(cleanlab) needs, and what the diagnosis compares against the labels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from admap.config import option
from admap.devices import pick_device
from admap.embed import EmbeddingOptions, EmbeddingReport
from admap.embedding_store import stored_embeddings
from admap.models import DEFAULT_EMBEDDING_MODEL, DEFAULT_GENERATOR_MODEL, load_causal_lm
from admap.progress import stage_bar
from admap.score.base import SCORERS, ScorerDefaults, ScoringContext
from admap.score.causal_lm import encode_in_context, padded_batches
from admap.select import preference_pairs

logger = logging.getLogger(__name__)

# The L2 penalty per pair, strong: a few thousand noisy labels cannot pin down hundreds of weights.
# On HH-RLHF harmless and the demo set (results/learned, benchmarks/bench_learned.py), flip detection
# peaks at 10-100 with MiniLM features and at 1-10 with SmolLM2 hidden states, and 0.1 is worse everywhere.
DEFAULT_REGULARIZATION = 10.0


def rated_pairs(responses: pd.DataFrame, preferences: pd.DataFrame | None = None) -> np.ndarray:
    """``(P, 2)`` int64 row positions in ``responses`` of (preferred, other) for every labelled pair.

    The dataset's own pairs where it has them, else every pair of an instruction's responses with
    different ratings (the higher rating preferred). Pairs naming a response not in ``responses``
    are dropped (their response was skipped at load).
    """
    if responses["response_id"].duplicated().any():
        raise ValueError("response_id must be unique to index the pairs")
    has_pairs = preferences is not None and not preferences.empty
    if not has_pairs and not responses["rating"].notna().any():
        raise ValueError("the learned scorer needs labels: this data has neither preference pairs nor ratings")
    pairs = preference_pairs(responses, rule="annotated", annotated=preferences if has_pairs else None)
    position = pd.Series(np.arange(len(responses)), index=responses["response_id"].to_numpy())
    chosen = pairs["chosen_id"].map(position)
    rejected = pairs["rejected_id"].map(position)
    known = chosen.notna() & rejected.notna()
    if (~known).any():
        logger.info("learned scorer: %d of %d pairs name responses not loaded, dropped", (~known).sum(), len(pairs))
    return np.column_stack([chosen[known], rejected[known]]).astype(np.int64).reshape(-1, 2)


def instruction_folds(groups: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """``(N,)`` fold in ``[0, k)`` of each element: its group's, the groups shuffled by ``seed`` and dealt
    round-robin, so that the folds' group counts differ by at most one."""
    if k < 2:
        raise ValueError(f"folds must be >= 2, got {k}")
    codes, uniques = pd.factorize(pd.Series(groups, dtype=object), sort=True)
    order = np.random.default_rng(seed).permutation(len(uniques))
    fold_of_group = np.empty(len(uniques), dtype=np.int64)
    fold_of_group[order] = np.arange(len(uniques)) % k
    return fold_of_group[codes]


def pair_differences(features: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The logistic design of ``pairs`` in both orientations: ``(X (2P, d), y (2P,))`` with rows
    ``f_preferred - f_other`` labelled 1 and their negations labelled 0. Both orientations make the
    fit exactly symmetric: swapping every pair negates the weights."""
    diff = features[pairs[:, 0]] - features[pairs[:, 1]]
    return np.concatenate([diff, -diff]), np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])


def fit_pairwise(
    features: np.ndarray, pairs: np.ndarray, *, regularization: float = DEFAULT_REGULARIZATION
) -> np.ndarray:
    """``(d,)`` weights ``w`` of ``P(a preferred to b) = sigmoid(w · (f_a - f_b))``, fitted on ``pairs``
    ``(P, 2)`` (preferred, other) rows of ``features`` ``(N, d)``.

    Logistic regression without intercept minimising the mean log-loss plus
    ``regularization / 2 * ||w||²``: a penalty per pair, so that one value suits datasets of any size
    (scikit-learn's ``C`` is ``1 / (regularization * rows)``). Each feature is scaled by its root mean
    square difference over these pairs before the fit, so that one value suits any feature scale; the
    returned weights act on the unscaled features.
    """
    from sklearn.linear_model import LogisticRegression

    if len(pairs) == 0:
        raise ValueError("fit_pairwise needs at least one pair")
    x, y = pair_differences(np.asarray(features, dtype=np.float64), pairs)
    scale = np.sqrt(np.mean(x**2, axis=0))
    scale[scale == 0] = 1.0  # a feature equal within every pair carries no preference
    model = LogisticRegression(C=1.0 / (regularization * len(x)), fit_intercept=False, max_iter=1000)
    model.fit(x / scale, y)
    return model.coef_[0] / scale


def paired_instructions(groups: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: the element's group (instruction) has at least one of ``pairs``."""
    groups = np.asarray(groups, dtype=object)
    return pd.Series(groups).isin(set(groups[np.asarray(pairs, dtype=np.int64).ravel()])).to_numpy()


def check_folds(groups: np.ndarray, pairs: np.ndarray, folds: int) -> None:
    """Raise a ValueError unless every one of ``folds`` folds can hold an instruction with a pair."""
    if folds < 2:
        raise ValueError(f"the learned scorer needs at least 2 folds, got {folds}")
    groups = np.asarray(groups, dtype=object)
    n_paired = len(pd.unique(groups[paired_instructions(groups, pairs)]))
    if n_paired < folds:
        raise ValueError(
            f"the learned scorer needs at least as many instructions with a labelled pair as folds: "
            f"{n_paired} instruction(s) with pairs, {folds} folds (lower --learned-folds or add data)"
        )


@dataclass(frozen=True)
class CrossFit:
    """The result of `cross_fit`: ``utilities`` ``(N,)``; ``fold`` ``(N,)``, the fold of each response,
    which the model that scored it did not see; ``weights`` ``(k, d)``, one row per fold's model."""

    utilities: np.ndarray
    fold: np.ndarray
    weights: np.ndarray


def cross_fit(
    features: np.ndarray,
    pairs: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    regularization: float = DEFAULT_REGULARIZATION,
) -> CrossFit:
    """Out-of-fold utilities of ``features`` ``(N, d)``: the responses of each fold of ``groups`` ``(N,)``
    (instruction ids) are scored by the model fitted on the ``pairs`` ``(P, 2)`` of the other folds.

    Instructions with pairs are dealt into the folds first and the others after them, so that every
    fold holds labelled instructions (each model is fitted on pairs, each pair is scored once) and an
    instruction without pairs is still scored, by a model that did not see it.
    """
    features = np.asarray(features, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if features.ndim != 2 or len(features) != len(groups):
        raise ValueError(f"features must be (N, d) with N = len(groups) = {len(groups)}, got {features.shape}")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= len(features)):
        raise ValueError("pairs point outside the features")
    if (groups[pairs[:, 0]] != groups[pairs[:, 1]]).any():
        raise ValueError("a pair compares responses of two different instructions")
    check_folds(groups, pairs, folds)
    labelled = paired_instructions(groups, pairs)
    fold = np.empty(len(groups), dtype=np.int64)
    fold[labelled] = instruction_folds(groups[labelled], folds, seed=seed)
    if (~labelled).any():
        fold[~labelled] = instruction_folds(groups[~labelled], folds, seed=seed)
    pair_fold = fold[pairs[:, 0]]
    utilities = np.empty(len(features), dtype=np.float64)
    weights = np.empty((folds, features.shape[1]), dtype=np.float64)
    for k in range(folds):
        weights[k] = fit_pairwise(features, pairs[pair_fold != k], regularization=regularization)
        held_out = fold == k
        utilities[held_out] = features[held_out] @ weights[k]
    return CrossFit(utilities=utilities, fold=fold, weights=weights)


def cross_fitted_utilities(
    features: np.ndarray,
    pairs: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    regularization: float = DEFAULT_REGULARIZATION,
) -> np.ndarray:
    """``(N,)`` out-of-fold utility of every response (see `cross_fit`)."""
    return cross_fit(features, pairs, groups, folds=folds, seed=seed, regularization=regularization).utilities


def same_instruction_pairs(groups: np.ndarray) -> np.ndarray:
    """``(P, 2)`` positions of responses to one instruction, each paired with the next response to its
    instruction (``groups`` ``(N,)``, instruction ids): comparisons of the kind the pairwise model makes,
    without labels, for the precision check of the embedding features."""
    codes, _ = pd.factorize(pd.Series(groups, dtype=object), sort=False)
    order = np.argsort(codes, kind="stable")
    same = codes[order][1:] == codes[order][:-1]
    return np.column_stack([order[:-1][same], order[1:][same]]).astype(np.int64)


def pair_agreement(utilities: np.ndarray, pairs: np.ndarray) -> float:
    """Share of ``pairs`` ``(P, 2)`` (preferred, other) whose utilities order them as labelled (ties: half)."""
    margin = utilities[pairs[:, 0]] - utilities[pairs[:, 1]]
    return float(np.mean((margin > 0) + 0.5 * (margin == 0))) if len(margin) else float("nan")


# --- Features ----------------------------------------------------------------------------------------------------


def lm_hidden_features(
    conversations: list[list[dict]],
    texts: list[str],
    *,
    model: str = DEFAULT_GENERATOR_MODEL,
    device: str = "auto",
    batch_size: int | None = None,
    max_length: int = 512,
    progress: bool = True,
) -> np.ndarray:
    """``(N, hidden)`` float32: a causal LM's last hidden state, mean-pooled over the tokens of
    ``texts[i]`` read as the assistant's reply to ``conversations[i]``.

    The conversation is rendered with the model's chat template and cut from the left to fit
    ``max_length`` tokens, so that the response is always what is pooled and each response is read
    in its context. Batches are padded on the right, which keeps every token's position the same
    as in an unbatched run.
    """
    import torch

    device = pick_device(device)
    lm, tokenizer = load_causal_lm(model, device=device)
    backbone = lm.base_model  # the transformer without its vocabulary head, which pooling does not need
    encoded = encode_in_context(conversations, texts, tokenizer, max_length)
    batch_size = batch_size or (32 if device.startswith("cuda") else 8)
    features = np.zeros((len(encoded), backbone.config.hidden_size), dtype=np.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with stage_bar(f"hidden states ({model})", len(encoded), unit=" responses", enabled=progress) as bar:
        for rows, ids, mask in padded_batches(encoded, batch_size, pad):
            pool = torch.zeros(ids.shape, dtype=torch.float32)
            for row, i in enumerate(rows):
                tokens, n_response = encoded[i]
                # An empty response has no tokens of its own: its last context token stands in.
                pool[row, len(tokens) - max(n_response, 1) : len(tokens)] = 1.0
            with torch.inference_mode():
                hidden = backbone(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).last_hidden_state
            pooled = (hidden.float().cpu() * pool[:, :, None]).sum(1) / pool.sum(1, keepdim=True)
            features[rows] = pooled.numpy()
            bar.update(len(rows))
    return features


FEATURE_SOURCES = ("embedding", "lm_hidden")


@dataclass
class LearnedOptions:
    features: Literal["embedding", "lm_hidden"] = option(
        "embedding",
        "features of each response, a sentence embedding (--embedding-model) or a causal LM's mean-pooled last "
        "hidden state over the response read in its conversation (--learned-lm)",
    )
    lm: str = option(DEFAULT_GENERATOR_MODEL, "features lm_hidden: a causal LM (id or path)")
    max_length: int = option(512, "features lm_hidden: tokens per conversation (cut on the left)")
    folds: int = option(5, "folds of instructions; each response is scored by the model fitted on the others")
    regularization: float = option(DEFAULT_REGULARIZATION, "L2 penalty per pair of the pairwise logistic model")
    seed: int = option(42, "seed of the instructions' fold assignment")


@SCORERS.register("learned")
@dataclass
class LearnedScorer(ScorerDefaults):
    """A pairwise model of the dataset's own preferences, cross-fitted over instruction folds: each
    response's score is its out-of-fold utility (see the module docstring)."""

    name: ClassVar[str] = "learned"
    needs_proxy: ClassVar[bool] = False
    Options: ClassVar[type] = LearnedOptions

    features: Literal["embedding", "lm_hidden"] = "embedding"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    lm_model: str = DEFAULT_GENERATOR_MODEL
    folds: int = 5
    regularization: float = DEFAULT_REGULARIZATION
    seed: int = 42
    # None: 16 sentence-embedding texts on the CPU and 128 on CUDA (the device the engine encodes on); 8 LM
    # sequences on the CPU and 32 on CUDA.
    batch_size: int | None = None
    max_length: int = 512
    device: str = "auto"
    options: EmbeddingOptions = field(default_factory=EmbeddingOptions)
    progress: bool = True
    # What the last `score` fitted: pairs, folds, out-of-fold agreement (written to summary.json).
    fit_summary: dict | None = field(default=None, init=False, repr=False, compare=False)
    # What the last embedding features embedded, cached and checked (written to summary.json); None for lm_hidden.
    embedding_report: EmbeddingReport | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.features not in FEATURE_SOURCES:
            raise ValueError(f"learned features must be one of {FEATURE_SOURCES}, got {self.features!r}")
        if self.folds < 2:
            raise ValueError(f"learned folds must be >= 2, got {self.folds}")
        if not self.regularization > 0:
            raise ValueError(f"learned regularization must be > 0, got {self.regularization}")
        if self.max_length < 1:
            raise ValueError(f"learned max_length must be >= 1, got {self.max_length}")

    @classmethod
    def from_options(cls, options: LearnedOptions, context: ScoringContext) -> LearnedScorer:
        return cls(
            features=options.features,
            embedding_model=context.embedding_model,
            lm_model=options.lm,
            folds=options.folds,
            regularization=options.regularization,
            seed=options.seed,
            batch_size=context.embed_batch_size,
            max_length=options.max_length,
            device=context.device,
            options=context.embedding,
            progress=context.progress,
        )

    def label(self) -> str:
        return f"{self.name} ({self.model})"

    def report(self) -> dict:
        return {
            "model": self.model,
            "fit": self.fit_summary,
            "embedding": self.embedding_report.to_dict() if self.embedding_report else None,
        }

    @property
    def model(self) -> str:
        """The model the features come from."""
        return self.embedding_model if self.features == "embedding" else self.lm_model

    def featurize(self, instructions: pd.DataFrame, responses: pd.DataFrame) -> np.ndarray:
        """``(len(responses), d)`` features of every response."""
        texts = responses["response"].fillna("").astype(str).tolist()
        self.embedding_report = None
        if self.features == "embedding":
            # Through the embedding cache: a reference run on the same data has embedded these already.
            with stored_embeddings(
                texts,
                same_instruction_pairs(responses["instruction_id"].to_numpy()),
                model=self.embedding_model,
                options=self.options,
                device=self.device,
                batch_size=self.batch_size,
                seed=self.seed,
                progress=self.progress,
            ) as stored:
                self.embedding_report = stored.report
                return stored.store.gather(stored.positions)
        prompts = responses["instruction_id"].map(instructions.set_index("instruction_id")["prompt_messages"])
        parsed = {prompt: json.loads(prompt) for prompt in prompts.dropna().unique()}
        conversations = [parsed.get(prompt, []) for prompt in prompts]
        return lm_hidden_features(
            conversations,
            texts,
            model=self.lm_model,
            device=self.device,
            batch_size=self.batch_size,
            max_length=self.max_length,
            progress=self.progress,
        )

    def score(
        self, instructions: pd.DataFrame, responses: pd.DataFrame, *, preferences: pd.DataFrame | None = None
    ) -> np.ndarray:
        pairs = rated_pairs(responses, preferences)
        groups = responses["instruction_id"].to_numpy()
        check_folds(groups, pairs, self.folds)  # before the features, which are the slow part
        fit = cross_fit(
            self.featurize(instructions, responses),
            pairs,
            groups,
            folds=self.folds,
            seed=self.seed,
            regularization=self.regularization,
        )
        self.fit_summary = {
            "features": self.features,
            "model": self.model,
            "folds": self.folds,
            "regularization": self.regularization,
            "seed": self.seed,
            "pairs": int(len(pairs)),
            "instructions_with_pairs": int(len(pd.unique(groups[paired_instructions(groups, pairs)]))),
            "out_of_fold_agreement": pair_agreement(fit.utilities, pairs),
        }
        logger.info(
            "learned scorer: %d pairs, out-of-fold agreement with the labels %.3f",
            len(pairs),
            self.fit_summary["out_of_fold_agreement"],
        )
        return fit.utilities.astype(np.float32)
