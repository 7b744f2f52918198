"""Scenes of several products: does per-object search beat searching the whole photo?

A scene is a 2x2 shelf of four query photos of four different products (any manifest's own
queries, so it works on unseen data). One POST /v1/search answers with the whole image first and
then one object per detection. A product is found per object when a detected object whose box
centre lies on its tile has it in its top k; it is found by the whole image when the whole-image
object has it in its top k. Recall is over all tiles of all scenes.
"""

import io
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image, ImageOps

from bench.qualitykit.manifest import Row

TILE = 256
GRID = 2
SEED = 20261128


@dataclass(frozen=True)
class Tile:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 on the scene
    key: str


@dataclass(frozen=True)
class Scene:
    jpeg: bytes
    tiles: tuple[Tile, ...]


def make_scenes(queries: list[Row], count: int, seed: int = SEED) -> list[Scene]:
    """``count`` scenes, each of GRID² photos of distinct match keys (none if too few keys)."""
    by_key: dict[str, list[Row]] = {}
    for row in queries:
        by_key.setdefault(row.match_key, []).append(row)
    if len(by_key) < GRID * GRID:
        return []
    rng = random.Random(seed)
    keys = sorted(by_key)
    return [_scene([rng.choice(by_key[k]) for k in rng.sample(keys, GRID * GRID)]) for _ in range(count)]


def _scene(rows: list[Row]) -> Scene:
    canvas = Image.new("RGB", (TILE * GRID, TILE * GRID), (255, 255, 255))
    tiles = []
    for n, row in enumerate(rows):
        x, y = (n % GRID) * TILE, (n // GRID) * TILE
        with Image.open(row.image_path) as photo:
            canvas.paste(ImageOps.fit(ImageOps.exif_transpose(photo).convert("RGB"), (TILE, TILE)), (x, y))
        tiles.append(Tile((x, y, x + TILE, y + TILE), row.match_key))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return Scene(out.getvalue(), tuple(tiles))


def run_scenes(client: httpx.Client, scenes: list[Scene], keys: dict[str, str], k: int) -> dict[str, Any]:
    """Searches every scene once with the default options; recall per object vs whole image."""
    found = {"per_object@1": 0, "per_object@10": 0, "whole_image@1": 0, "whole_image@10": 0}
    detected, times = 0, []
    for scene in scenes:
        started = time.perf_counter()
        response = client.post("/v1/search", data={"k": str(k)}, files={"image": ("scene.jpg", scene.jpeg)})
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        objects = response.json()["objects"]
        whole = [o for o in objects if o["label"] == "image"]
        parts = [o for o in objects if o["label"] != "image"]
        for tile in scene.tiles:
            on_tile = [o for o in parts if _centre_inside(o["box"], tile.box)]
            detected += bool(on_tile)
            for cut in (1, 10):
                found[f"per_object@{cut}"] += any(tile.key in _keys(o, keys, cut) for o in on_tile)
                found[f"whole_image@{cut}"] += any(tile.key in _keys(o, keys, cut) for o in whole)
    tiles = sum(len(s.tiles) for s in scenes)
    return {
        "scenes": len(scenes),
        "products": tiles,
        "detected": round(detected / tiles, 4),
        **{name: round(count / tiles, 4) for name, count in found.items()},
        "median_query_ms": round(statistics.median(times), 2),
    }


def _keys(obj: dict[str, Any], keys: dict[str, str], cut: int) -> set[str]:
    return {keys.get(str(m["product_id"]), "") for m in obj["matches"][:cut]}


def _centre_inside(box: list[float], tile: tuple[int, int, int, int]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return tile[0] <= cx < tile[2] and tile[1] <= cy < tile[3]


def render_scenes(results: dict[str, dict[str, Any]]) -> str:
    lines = ["scenes (2x2 shelves of 4 products): recall of the products in the scene"]
    lines.append(
        f"{'dataset':20s} {'scenes':>6s} {'detected':>9s} {'per-object R@1':>15s} {'whole R@1':>10s} {'per-object R@10':>16s} {'whole R@10':>11s}"
    )
    for name, r in results.items():
        lines.append(
            f"{name:20s} {r['scenes']:6d} {100 * r['detected']:8.1f}% {100 * r['per_object@1']:14.1f}% "
            f"{100 * r['whole_image@1']:9.1f}% {100 * r['per_object@10']:15.1f}% {100 * r['whole_image@10']:10.1f}%"
        )
    return "\n".join(lines) + "\n"
