"""The public API under a schema-driven fuzzer: Schemathesis generates requests from the stack's
own /openapi.json, valid and invalid ones, examples, edge cases and sequences of calls, and checks
every answer against that schema: no 5xx, only documented status codes, content types, bodies
and headers; invalid requests refused; a 405 naming the methods the path takes.

Left out is only "a schema-valid request is accepted": the schema cannot say which bytes are an
image or which URL is reachable, so a generated photo or feed URL is rightly refused (422).

It runs on a stack of its own with three products, not the demo catalog: the fuzzer PUTs,
DELETEs and imports, and finds the products to read (and delete) by listing them. The seed is
fixed, so a run is reproducible; change it locally to look further.
"""

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.catalog import unique_image_catalog_rows
from tests.e2e.conftest import private_stack_env
from tests.paths import ROOT

log = logging.getLogger(__name__)

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES_PER_OPERATION = 25
SEED = 20261129


@pytest.fixture(scope="module")
def fuzzed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = private_stack_env(tmp_path_factory.mktemp("fuzzed"))
    try:  # down even when up is interrupted: it may have started some processes
        up = subprocess.run([str(ROOT / "scripts" / "up"), "--detach", "--no-demo"], env=env, timeout=900)
        assert up.returncode == 0, f"./scripts/up failed with exit code {up.returncode}"
        url = f"http://127.0.0.1:{env['VS_GATEWAY_PORT']}"
        # Real photos: the fuzzer's own never decode, so it would find no product to read.
        for row in unique_image_catalog_rows("fashion_products")[:3]:
            files = {"image": (row.path.name, row.path.read_bytes(), "image/jpeg")}
            data = {"title": row.match_key}
            put = httpx.put(f"{url}/v1/products/{row.product_id}", data=data, files=files, timeout=60)
            assert put.status_code == 200, put.text
        yield url
    finally:
        subprocess.run([str(ROOT / "scripts" / "down")], env=env, timeout=120, check=True)


@pytest.mark.timeout(900)
def test_a_schema_driven_fuzzer_finds_no_fault(fuzzed_gateway: str, tmp_path: Path) -> None:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{fuzzed_gateway}/openapi.json",
        "--checks=all",
        "--exclude-checks=positive_data_acceptance",
        f"--max-examples={EXAMPLES_PER_OPERATION}",
        f"--seed={SEED}",
        "--generation-database=none",
        "--request-timeout=60",
        "--workers=1",  # its threads crash it now and then (a SystemError inside Hypothesis)
        "--no-color",
    ]
    # cwd: its cache of crashes stays out of the working tree
    run = subprocess.run(command, capture_output=True, text=True, timeout=800, check=False, cwd=tmp_path)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    log.warning("schemathesis (%s):\n%s", " ".join(command[2:]), summary)
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-2_000:]
    generated = re.search(r"(\d+) generated", summary)
    assert generated is not None, summary
    assert int(generated.group(1)) >= 500, summary  # it did fuzz
