"""The ``ray`` engine: the embedding stage's encoding on a Ray cluster, through Ray Data.

The texts (longest first) become a dataset of ``{"position", "text"}`` rows in blocks of
``chunk_size``; a fixed pool of actors, each with the encoder loaded once (on a GPU of its own when
the cluster has GPUs), maps every block to ``{"position", "embedding"}``; the driver streams the
results back and the caller writes them to its on-disk store. Only the driver touches the cache,
so it need not be on shared storage; every node needs admap installed (and the model, which each
actor resolves on its own node: the packaged all-MiniLM-L6-v2 through its package). The embedding
precision follows the actors' device (`RayEngine.encoding_device`), not the driver's: a CPU head node
driving GPU actors embeds in fp16 under ``auto``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from admap.encoders import EmbeddingSpec, encode_texts, load_encoder
from admap.engines.base import ENGINES

logger = logging.getLogger(__name__)

MISSING_RAY = "engine ray needs Ray Data: pip install 'admap[dist]'"
# Passed to the actors when set on the driver: where models and caches are, and offline mode.
# Nothing else of the driver's environment travels (API keys above all).
PASSED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_OFFLINE", "ADMAP_CACHE")
# A CPU actor's threads: two per actor keeps intra-op parallelism while giving several actors a node.
CPUS_PER_ACTOR = 2
# A GPU actor's CPUs (tokenisation, collation): at most this many of its node's CPUs per GPU.
MAX_CPUS_PER_GPU_ACTOR = 4


def import_ray():
    """``ray`` with Ray Data, or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise ImportError(MISSING_RAY) from error
    return ray


@dataclass(frozen=True)
class ActorPlan:
    """Where and how many encoder actors run."""

    actors: int
    device: str
    num_cpus: float
    num_gpus: float

    def describe(self) -> str:
        per = f"{self.num_gpus:g} GPU, {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"{self.actors} actor(s) on {self.device}, {per} each"


def plan_actors(device: str, actors: int | None, cluster: dict[str, float], nodes: list[dict[str, float]]) -> ActorPlan:
    """The actor pool for ``device`` on a cluster with ``cluster`` resources in all and ``nodes``'s each.

    ``auto`` is CUDA when the cluster has GPUs. CUDA actors hold one GPU each (Ray makes it their
    only visible one, so ``cuda:N`` is ``cuda`` there) and default to one per GPU; CPU actors hold
    ``CPUS_PER_ACTOR`` CPUs (their torch threads) and default to as many as fit the nodes.
    """
    gpus = int(cluster.get("GPU", 0))
    use_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if use_gpu:
        if gpus < 1:
            raise RuntimeError(f"device {device!r} asks for CUDA but the Ray cluster has no GPUs")
        per_gpu = [node.get("CPU", 0) // node["GPU"] for node in nodes if node.get("GPU", 0) >= 1]
        num_cpus = max(1, min(MAX_CPUS_PER_GPU_ACTOR, int(min(per_gpu, default=1))))
        return ActorPlan(actors=actors or gpus, device="cuda", num_cpus=num_cpus, num_gpus=1)
    node_cpus = [int(node.get("CPU", 0)) for node in nodes] or [int(cluster.get("CPU", 1))]
    largest = max(1, max(node_cpus))
    if actors is None:
        per_actor = min(CPUS_PER_ACTOR, largest)
        actors = max(1, sum(cpus // per_actor for cpus in node_cpus))
    else:
        # Share the cluster's CPUs between the requested actors, each within one node.
        per_actor = max(1, min(largest, int(cluster.get("CPU", 1)) // actors))
    return ActorPlan(actors=actors, device="cpu" if device == "auto" else device, num_cpus=per_actor, num_gpus=0)


def passed_env() -> dict[str, str]:
    return {name: os.environ[name] for name in PASSED_ENV if name in os.environ}


class EncodeBatch:
    """A Ray Data callable class: one encoder load per actor, then one block of texts per call."""

    def __init__(self, model: str, precision: str, device: str, batch_size: int, threads: int | None):
        if threads:
            import torch

            # Ray sets OMP_NUM_THREADS to the actor's CPUs when the node's environment has none; this
            # holds either way.
            torch.set_num_threads(threads)
        # The model name resolves here, on the actor's node (the packaged default through its package).
        self.encoder = load_encoder(model, device=device, precision=precision)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(text) for text in batch["text"]]
        if texts:
            vectors = encode_texts(self.encoder, texts, batch_size=self.batch_size, progress=False)
        else:
            vectors = np.empty((0, self.encoder.get_sentence_embedding_dimension()), dtype=np.float32)
        return {"position": np.asarray(batch["position"], dtype=np.int64), "embedding": vectors}


@ENGINES.register("ray")
@dataclass
class RayEngine:
    """Encode on a Ray cluster: ``address`` (else ``$RAY_ADDRESS``, else a local cluster), ``actors``
    encoder actors (else one per GPU, or one per ``CPUS_PER_ACTOR`` CPUs).

    ``with engine:`` connects to the cluster, or starts a local one, and plans the actors from its
    resources; the exit stops a cluster the engine started (one someone else started, or one it only
    connected to, keeps running). Every ``embed`` of the block runs on that cluster and plan.
    """

    address: str | None = None
    actors: int | None = None
    device: str = "auto"
    name: str = "ray"
    _plan: ActorPlan | None = field(default=None, init=False, repr=False, compare=False)
    _started: bool = field(default=False, init=False, repr=False, compare=False)

    @classmethod
    def from_options(cls, options, *, device: str) -> RayEngine:
        import_ray()  # fail before any work when Ray is missing
        return cls(address=options.ray_address, actors=options.ray_actors, device=device)

    def __enter__(self) -> RayEngine:
        ray = import_ray()
        self._started = not ray.is_initialized()
        if self._started:
            # address None: $RAY_ADDRESS, else the cluster last started on this machine, else a new local one.
            ray.init(address=self.address or None, ignore_reinit_error=True, include_dashboard=False)
        elif self.address:
            logger.info("Ray is already initialised in this process: using that cluster, not %s", self.address)
        try:
            self._plan = plan_actors(
                self.device,
                self.actors,
                ray.cluster_resources(),
                [node["Resources"] for node in ray.nodes() if node.get("Alive")],
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self._plan = None
        if self._started:
            import_ray().shutdown()
            self._started = False

    @property
    def encoding_device(self) -> str:
        """The actors' device: ``cuda`` when they hold GPUs, whatever this process has."""
        return self._entered_plan().device

    def _entered_plan(self) -> ActorPlan:
        if self._plan is None:
            raise RuntimeError("the ray engine plans its actors on entering `with engine:`; use it inside that block")
        return self._plan

    def embed(
        self, texts: Sequence[str], spec: EmbeddingSpec, *, chunk_size: int, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        plan = self._entered_plan()
        if not len(texts):
            return
        ray = import_ray()
        context = ray.data.DataContext.get_current()
        progress_bars = context.enable_progress_bars
        batches = None
        try:
            blocks = [_block(start, texts[start : start + chunk_size]) for start in range(0, len(texts), chunk_size)]
            plan = replace(plan, actors=min(plan.actors, len(blocks)))  # an actor per block at most
            logger.info("engine ray: %d texts in %d blocks, %s", len(texts), len(blocks), plan.describe())
            # Ray Data's own bars (one per operator) would stack under the stage's one bar, which the caller draws.
            context.enable_progress_bars = False
            dataset = ray.data.from_arrow(blocks).map_batches(
                EncodeBatch,
                fn_constructor_kwargs={
                    "model": spec.model,
                    "precision": spec.precision,
                    "device": plan.device,
                    "batch_size": batch_size,
                    "threads": None if plan.num_gpus else int(plan.num_cpus),
                },
                batch_size=chunk_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                num_cpus=plan.num_cpus,
                num_gpus=plan.num_gpus or None,
                runtime_env={"env_vars": passed_env()},
            )
            batches = iter(dataset.iter_batches(batch_size=chunk_size, batch_format="numpy"))
            for batch in batches:
                yield np.asarray(batch["position"], dtype=np.int64), _matrix(batch["embedding"])
        finally:
            # Also when the caller abandons the generator: stop the pipeline and its actors.
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            context.enable_progress_bars = progress_bars


def _block(start: int, texts: Sequence[str]):
    import pyarrow as pa

    return pa.table(
        {
            "position": pa.array(np.arange(start, start + len(texts), dtype=np.int64)),
            "text": pa.array(list(texts), type=pa.large_string()),
        }
    )


def _matrix(column: np.ndarray) -> np.ndarray:
    """A batch's embedding column as one ``(n, d)`` float32 array (an object column holds rows)."""
    if column.dtype == object:
        column = np.stack(list(column))
    return np.ascontiguousarray(column, dtype=np.float32)
