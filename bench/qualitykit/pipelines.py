"""The pipelines the harness compares: each is service settings plus search options.

"baseline" is the seed method this project grew from (whole image, one centre crop, the same
backbone with average pooling, no detection, exact cosine k-NN, no re-ranking); "default" is
whatever the services do when nothing is configured, so the harness always measures what
`/v1/search` really gives. The others switch one improvement off (or on) at a time, so each is
measured against the baseline in the same run.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    # Service settings (environment variables) of the stack this pipeline runs on.
    env: Mapping[str, str] = field(default_factory=dict)
    # Form fields sent with every POST /v1/search.
    search: Mapping[str, str] = field(default_factory=dict)

    @property
    def stack_key(self) -> tuple[tuple[str, str], ...]:
        """Pipelines with equal settings share one stack and one indexed catalog."""
        return tuple(sorted(self.env.items()))


SEED_ENV = {"VS_EMBEDDER_VIEWS": "whole", "VS_INDEXER_CATEGORY_RERANK": "0"}
DETECTIONS_ONLY = {"VS_GATEWAY_WHOLE_IMAGE_OBJECT": "false"}
WHOLE_IMAGE = {"detect": "false"}

PIPELINES: dict[str, Pipeline] = {
    p.name: p
    for p in (
        Pipeline(
            "baseline", "seed: whole image, 1 centre crop, avg pooling, exact cosine", SEED_ENV, WHOLE_IMAGE
        ),
        Pipeline("default", "the services' defaults (nothing configured)"),
        Pipeline(
            "multi-crop",
            "baseline + multi-crop descriptors (whole image + 5 zoomed crops)",
            {"VS_INDEXER_CATEGORY_RERANK": "0"},
            WHOLE_IMAGE,
        ),
        Pipeline(
            "default-no-rerank", "default without category re-ranking", {"VS_INDEXER_CATEGORY_RERANK": "0"}
        ),
        Pipeline(
            "default-detections-only",
            "default, answering with the most prominent detection first (no whole-image object)",
            DETECTIONS_ONLY,
        ),
        Pipeline(
            "baseline+detect", "baseline searching the most prominent detection", SEED_ENV | DETECTIONS_ONLY
        ),
    )
}
DEFAULT_SELECTION = ("baseline", "default")


def select(names: list[str]) -> list[Pipeline]:
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {', '.join(unknown)}; known: {', '.join(PIPELINES)}")
    return [PIPELINES[n] for n in names]
