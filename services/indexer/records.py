"""Plain domain records: what the store reads and writes, independent of the wire format."""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]  # (n, dim), rows L2-normalised
VectorIds = npt.NDArray[np.int64]  # (n,)


@dataclass(frozen=True)
class ProductRecord:
    product_id: str
    title: str = ""
    url: str = ""
    image_url: str = ""
    price: float | None = None
    currency: str = ""
    category: str = ""
    brand: str = ""
    attributes_json: str = "{}"
    content_hash: str = ""
    updated_at_ms: int = 0
    indexed_at_ms: int = 0
    vector_count: int = 0


@dataclass(frozen=True)
class Filter:
    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.categories or self.brands) and self.min_price is None and self.max_price is None


@dataclass(frozen=True)
class SearchParams:
    k: int = 10
    offset: int = 0
    filter: Filter = field(default_factory=Filter)
    # Matches below this cosine similarity are dropped; -1 keeps everything.
    min_similarity: float = -1.0


@dataclass(frozen=True)
class Match:
    product: ProductRecord
    similarity: float
    image_key: str


@dataclass(frozen=True)
class ModelInfo:
    """The embedding model the store is bound to, fixed by its first Upsert."""

    model_id: str
    dim: int


@dataclass(frozen=True)
class Stats:
    products: int
    vectors: int
    model: ModelInfo | None
