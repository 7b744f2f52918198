import subprocess
import sys

from services.indexer.ids import vector_id


def test_vector_id_is_pinned_so_it_is_stable_across_runs_and_machines() -> None:
    assert vector_id("shoe-1", "front.jpg") == 4347744502863567548


def test_vector_id_is_the_same_in_a_fresh_interpreter() -> None:
    # Guards against anything process-dependent (e.g. Python's salted hash()) creeping in.
    code = "from services.indexer.ids import vector_id; print(vector_id('shoe-1', 'front.jpg'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert int(out.stdout) == vector_id("shoe-1", "front.jpg")


def test_vector_ids_are_positive_int64_and_distinct() -> None:
    ids = {vector_id(f"p{p}", f"img{i}") for p in range(200) for i in range(10)}
    assert len(ids) == 2000
    assert all(0 < i < 2**63 for i in ids)


def test_product_and_image_key_do_not_run_together() -> None:
    assert vector_id("a", "bc") != vector_id("ab", "c")
    assert vector_id("p1", "x") != vector_id("p2", "x")
