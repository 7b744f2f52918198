"""LoadAwareSession: a run alone uses the wide session, a run that overlaps another the narrow one."""

import threading
from typing import Any

import numpy as np

from services.detector.sessions import LoadAwareSession
from tests.paths import MODELS

YOLO = MODELS / "yolov8n_fp32_from_int8.onnx"


class _Blocking:
    """Stands in for an onnxruntime session: records its runs, and can hold one until released."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.calls = 0
        self.started = threading.Event()
        self._hold = hold

    def run(self, outputs: list[str], feeds: dict[str, Any]) -> list[np.ndarray]:
        self.calls += 1
        self.started.set()
        if self._hold is not None:
            assert self._hold.wait(10)
        return [np.zeros((1, 2), dtype=np.float64)]


def test_a_run_that_starts_while_another_is_in_flight_goes_to_the_narrow_session() -> None:
    sessions = LoadAwareSession(YOLO, threads=2, concurrent_threads=1)
    release = threading.Event()
    wide, narrow = _Blocking(release), _Blocking()
    sessions._alone, sessions._concurrent = wide, narrow

    first = threading.Thread(target=sessions.run, args=("out", {}))
    first.start()
    assert wide.started.wait(10)
    output = sessions.run("out", {})  # the first run is still in flight
    assert (wide.calls, narrow.calls) == (1, 1)
    assert output.dtype == np.float32
    assert output.shape == (1, 2)

    release.set()
    first.join(10)
    sessions.run("out", {})  # alone again
    assert (wide.calls, narrow.calls) == (2, 1)
    assert sessions.runs == {"alone": 2, "concurrent": 1}


def test_one_session_when_both_thread_counts_agree_and_real_runs_give_the_same_output() -> None:
    shared = LoadAwareSession(YOLO, threads=1, concurrent_threads=1)
    assert shared._concurrent is shared._alone

    split = LoadAwareSession(YOLO, threads=2, concurrent_threads=1)
    assert split._concurrent is not split._alone
    model_input = split.session.get_inputs()[0]
    output_name = split.session.get_outputs()[0].name
    tensor = np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)
    wide = split._alone.run([output_name], {model_input.name: tensor})[0]
    narrow = split._concurrent.run([output_name], {model_input.name: tensor})[0]
    np.testing.assert_allclose(wide, narrow, rtol=1e-4, atol=1e-3)
