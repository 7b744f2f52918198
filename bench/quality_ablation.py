"""In-process ablation of retrieval-quality techniques around the fixed MobileNetV2 backbone.

Every image is run through the backbone a few times only (the 6 multi-crop views and their
mirrors in one batch, whose first view is the seed's centre crop, plus one aspect-preserving
320 px run); pooling variants, flips, ImageNet-class probabilities (the classifier head applied
to the same pooled views) and all post-processing are derived from those runs with numpy
(bench/qualitykit/ablation_methods.py). Descriptors are cached per manifest (path + mtime), so
reruns only re-score. Rows that fit statistics on the manifest's train photos are marked: the
services have no such photos of a new shop's products. Prints a table, writes JSON.

    .venv/bin/python bench/quality_ablation.py MANIFEST [MANIFEST ...] [--json OUT] [--limit N]
"""

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.qualitykit import ablation_methods as am  # noqa: E402
from bench.qualitykit.featuremap import feature_map_model, linear_head  # noqa: E402
from bench.qualitykit.manifest import Dataset, ManifestError, Row, load_dataset, scorable  # noqa: E402
from bench.qualitykit.metrics import query_scores, relevant_counts, summarise  # noqa: E402
from services.common.images import decode_image  # noqa: E402
from services.embedder.manifest import load_manifest, model_path  # noqa: E402
from services.embedder.preprocess import normalise  # noqa: E402
from services.embedder.views import view_batch  # noqa: E402

MODELS = Path(os.environ.get("VS_MODELS_DIR", ROOT.parent / "shared" / "models"))
BACKBONE = "mobilenetv2-features"  # entry of services/embedder/models.toml
CLASSIFIER = "mobilenetv2_imagenet_fp32.onnx"  # the same backbone weights plus the ImageNet head
CACHE_VERSION = 1  # bump when a stored descriptor changes meaning
CHECKPOINT = 500  # images between cache writes, so an interrupted first run keeps its work
DEPTH = 50  # ranking depth, as bench/quality's default --k
FRACTION = 0.7  # multi-crop view side, as the embedder's default


class Backbone:
    """Feature-map session plus the classifier head: every raw descriptor of an image from 2 runs."""

    def __init__(self, models: Path, threads: int = 2) -> None:
        entry = load_manifest().get(BACKBONE)
        self.spec, self.input = entry.preprocessing, entry.input
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        graph = feature_map_model(model_path(entry, models))
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.weight, self.bias = linear_head(models / CLASSIFIER, "logits")  # (1001, c), (1001,)

    def maps(self, batch: am.Matrix) -> am.FeatureMaps:
        """(n, 3, h, w) model input -> (n, c, h/32, w/32) last feature map."""
        return np.asarray(self.session.run(None, {self.input: batch})[0], dtype=np.float32)

    def describe(self, path: Path) -> am.Vectors:
        """One image file -> its raw descriptors (see ablation_methods.image_descriptors)."""
        pixels = decode_image(path.read_bytes()).pixels
        views = view_batch([pixels], "multi-crop", FRACTION, self.spec)  # (6, 3, 224, 224)
        maps = self.maps(np.concatenate([views, views[..., ::-1]]))  # (12, c, 7, 7): views, mirrors
        height, width = am.aspect_size(pixels.shape[0], pixels.shape[1])
        resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
        aspect = self.maps(normalise(np.asarray(resized)[None], self.spec))  # (1, c, height/32, width/32)
        return am.image_descriptors(maps, aspect, self.weight, self.bias)


def descriptors(dataset: Dataset, paths: list[Path], args: argparse.Namespace) -> am.Vectors:
    """Raw descriptors of ``paths`` ((len(paths), d) each), computing only images not in the cache."""
    stamp = f"{dataset.manifest}|{dataset.manifest.stat().st_mtime_ns}|v{CACHE_VERSION}"
    file = args.cache / f"{dataset.name}-{hashlib.sha1(stamp.encode()).hexdigest()[:16]}.npz"
    done: list[str] = []
    stored: am.Vectors = {}
    if file.exists():
        with np.load(file) as data:
            done = [str(p) for p in data["paths"]]
            stored = {name: data[name] for name in data.files if name != "paths"}
    missing = sorted({str(p) for p in paths} - set(done))
    backbone, fresh = (Backbone(args.models) if missing else None), list[am.Vectors]()
    for i, name in enumerate(
        tqdm(missing, desc=dataset.name, unit="img", file=sys.stderr, disable=not missing), start=1
    ):
        fresh.append(backbone.describe(Path(name)) if backbone else {})
        if len(fresh) == CHECKPOINT or i == len(missing):
            new = {k: np.stack([f[k] for f in fresh]) for k in fresh[0]}
            stored = {k: np.concatenate([stored[k], v]) if stored else v for k, v in new.items()}
            done += missing[i - len(fresh) : i]
            arrays: dict[str, Any] = {"paths": np.array(done), **stored}
            args.cache.mkdir(parents=True, exist_ok=True)
            np.savez(file.with_suffix(".tmp.npz"), **arrays)
            file.with_suffix(".tmp.npz").replace(file)
            fresh = []
    row = {p: i for i, p in enumerate(done)}
    take = [row[str(p)] for p in paths]
    return {name: array[take] for name, array in stored.items()}


Scorer = Callable[[am.Split], am.Matrix]  # -> (queries, products) scores


@dataclass(frozen=True)
class Method:
    name: str
    score: Scorer = field(repr=False)
    fits_on_train: bool = False
    note: Callable[[am.Split], str] = field(default=lambda s: "", repr=False)


def _cosine(name: str) -> Scorer:
    return lambda s: s.cosine(name)


def _catalog_whitening(dims: int, power: float) -> Method:
    def components(s: am.Split) -> str:
        rows, d = s.catalog["mc"].shape
        return f"{rows - 1} components (catalog rank)" if rows - 1 < min(dims, d) else ""

    name = f"mc + PCA-whitening on catalog {dims}d, power {power}"
    return Method(name, lambda s: s.whitened(am.fit_whitening(s.catalog["mc"], dims, power)), note=components)


def _rerank(weight: float) -> Method:
    name = f"mc + category re-ranking w={weight}"
    return Method(name, lambda s: am.category_rerank(s.cosine("mc"), s.categories, weight))


def _semantic(weight: float) -> Method:
    name = f"mc + {weight} x ImageNet-class similarity"
    return Method(name, lambda s: s.cosine("mc") + weight * s.cosine("semantic"))


def _query_expansion(s: am.Split) -> am.Matrix:
    return s.scores(am.alpha_query_expansion(s.queries["mc"], s.catalog["mc"]), s.catalog["mc"])


def _database_augmentation(s: am.Split) -> am.Matrix:
    return s.scores(s.queries["mc"], am.database_augmentation(s.catalog["mc"]))


def _train_centring(s: am.Split) -> am.Matrix:
    mean = s.train["mc"].mean(axis=0)  # (d,)
    return s.scores(am.unit(s.queries["mc"] - mean), am.unit(s.catalog["mc"] - mean))


def _train_whitening(s: am.Split) -> am.Matrix:
    return s.whitened(am.fit_whitening(s.train["mc"], 128, 0.5))


def methods() -> list[Method]:
    """The ablation rows, seed first; from "multi-crop" down they build on the services' descriptor."""
    cosine_rows = [
        ("seed: centre crop 224, avg pool", "seed"),
        ("GeM p=3 (centre crop 224)", "gem"),
        ("max pool (centre crop 224)", "max"),
        ("aspect 320, avg pool", "aspect"),
        ("aspect 320, GeM p=3", "aspect+gem"),
        ("seed + flip averaging", "seed+flip"),
        ("regional pooling of the map (whole + 5x70%)", "regional"),
        ("multi-crop (services' descriptor)", "mc"),
        ("multi-crop + flip", "mc+flip"),
    ]
    return [
        *(Method(label, _cosine(name)) for label, name in cosine_rows),
        *(_catalog_whitening(dims, power) for dims in (128, 256, 512) for power in (0.5, 1.0)),
        Method("mc + alpha-QE (top 2, alpha 3)", _query_expansion),
        Method("mc + DBA (top 2)", _database_augmentation),
        *(_rerank(weight) for weight in (0.05, 0.1)),
        *(_semantic(weight) for weight in (0.1, 0.25)),
        Method("mc centred on the train-query mean", _train_centring, fits_on_train=True),
        Method("mc + PCA-whitening on train queries 128d, power 0.5", _train_whitening, fits_on_train=True),
    ]


def measure(dataset: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """Every method's scores on one dataset (fractions, as summarise() gives them)."""
    queries = [dataset.queries[i] for i in am.evenly_spaced(len(dataset.queries), args.limit)]
    train = [dataset.train_queries[i] for i in am.evenly_spaced(len(dataset.train_queries), args.limit)]
    first: dict[str, Row] = {}  # product id -> its first catalog row (key and category)
    for row in dataset.catalog:
        first.setdefault(row.product_id, row)
    products = list(first)
    groups = [dataset.catalog, queries, train]
    raw = descriptors(dataset, [r.image_path for group in groups for r in group], args)
    ends = list(itertools.accumulate(map(len, groups)))
    catalog, scored, fitting = (
        am.derive({k: v[end - len(g) : end] for k, v in raw.items()}) if g else {}
        for g, end in zip(groups, ends, strict=True)
    )
    index = {p: i for i, p in enumerate(products)}
    split = am.Split(
        catalog,
        scored,
        fitting,
        product_of_row=np.array([index[r.product_id] for r in dataset.catalog], dtype=np.intp),
        categories=am.category_indices([first[p].category for p in products]),
    )
    keys, relevant = [first[p].match_key for p in products], relevant_counts(dataset.catalog)
    rows = []
    for method in methods():
        if method.fits_on_train and not train:
            continue
        ranked = am.top_indices(method.score(split), DEPTH)  # (queries, DEPTH) product indices
        scores = [
            query_scores([keys[i] for i in ranking], q.match_key, relevant.get(q.match_key, 0))
            for ranking, q in zip(ranked, queries, strict=True)
        ]
        note = ", ".join(
            filter(None, ["fits on train photos" if method.fits_on_train else "", method.note(split)])
        )
        rows.append({"method": method.name, **summarise(scores), "note": note})
    counts = {"queries": len(queries), "catalog_products": len(products), "train_queries": len(train)}
    return {"name": dataset.name, "manifest": str(dataset.manifest), **counts, "methods": rows}


def render(result: dict[str, Any]) -> str:
    """One dataset as an aligned table in percent, with the R@1 change against the seed row."""
    seed = result["methods"][0]["recall@1"]
    cells = [["method", "R@1", "dR@1", "R@5", "R@10", "mAP@10", "MRR", "note"]]
    for m in result["methods"]:
        percent = [f"{100 * m[k]:.1f}" for k in ("recall@1", "recall@5", "recall@10", "map@10", "mrr")]
        delta = f"{100 * (m['recall@1'] - seed):+.1f}" if cells[1:] else "-"
        cells.append([m["method"], percent[0], delta, *percent[1:], m["note"]])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 7) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    head = f"{result['name']}: {result['queries']} queries, {result['catalog_products']} catalog products"
    return "\n".join([f"{head}, {result['train_queries']} train photos", *(line.rstrip() for line in lines)])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("manifests", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "quality_ablation.json")
    parser.add_argument("--limit", type=int, help="use N queries (and N train photos), spread evenly")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder holding the ONNX files")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vs-ablation-cache"), help="descriptor cache")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    try:
        datasets = [load_dataset(p) for p in args.manifests]
    except ManifestError as exc:
        print(f"quality_ablation: {exc}", file=sys.stderr)
        return 2
    results = []
    for dataset in scorable(datasets, "quality_ablation"):
        started = time.perf_counter()
        results.append(measure(dataset, args) | {"seconds": 0.0})
        results[-1]["seconds"] = round(time.perf_counter() - started, 1)
        print(render(results[-1]) + "\n", flush=True)
    if not results:
        return 2
    report = {"mode": "in-process", "backbone": BACKBONE, "ranking_depth": DEPTH, "limit": args.limit}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**report, "datasets": results}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
