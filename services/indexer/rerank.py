"""Category-consistency re-ranking: the nearest products vote for a category, and products of a
well-voted category move up.

A single nearest neighbour is often a look-alike from the wrong category (a brown bag next to a
brown shoe); the neighbourhood as a whole is more reliable. Each of the ``neighbours`` best
products votes for its catalog category with weight similarity³ (close neighbours count far
more), and every candidate's score becomes ``similarity + weight * vote share of its category``.
The similarity reported to clients stays the plain cosine; only the order changes. Products
without a category neither vote nor gain. Measured in docs/quality.md.
"""

from collections.abc import Callable
from dataclasses import dataclass

from services.indexer.search import Hit

VOTE_POWER = 3


@dataclass(frozen=True)
class CategoryRerank:
    weight: float = 0.0  # 0 switches re-ranking off
    neighbours: int = 10  # how many nearest products vote
    depth: int = 50  # how far down the similarity order a product can be pulled up from

    @property
    def enabled(self) -> bool:
        return self.weight > 0

    def pool(self, need: int) -> int:
        """How many nearest products to fetch so that the ``need`` best after re-ranking are exact
        within the depth."""
        return max(need, self.neighbours) + self.depth if self.enabled else need


def rerank_by_category(
    hits: list[Hit], category_of: Callable[[str], str], rerank: CategoryRerank
) -> list[Hit]:
    """Best-first hits (a pool deeper than the page) -> the same hits in re-ranked order."""
    if not rerank.enabled or len(hits) < 2:
        return hits
    votes: dict[str, float] = {}
    for hit in hits[: rerank.neighbours]:
        category = category_of(hit.product_id)
        if category:
            votes[category] = votes.get(category, 0.0) + max(hit.similarity, 0.0) ** VOTE_POWER
    total = sum(votes.values())
    if total <= 0:
        return hits

    def score(hit: Hit) -> float:
        return hit.similarity + rerank.weight * votes.get(category_of(hit.product_id), 0.0) / total

    return sorted(hits, key=score, reverse=True)  # stable: equal scores keep similarity order
