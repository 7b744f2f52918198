"""Two onnxruntime sessions over one model: a wide one for a run alone, a narrow one under load.

A lone request is fastest with every core working on its ops (intra-op threads). Under load that
setting costs CPU: runs that overlap each wake threads on cores the other run (and the embedder)
already use, and intra-op threads that wait for each other burn time in hand-overs. A run that
starts while another is in flight therefore goes to a session with fewer threads (by default 1),
which runs on its calling thread: concurrent requests then scale over requests, not over ops.
"""

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

FloatArray = npt.NDArray[np.float32]


class LoadAwareSession:
    """Thread-safe; ``run`` picks the session by how many runs are in flight when it starts."""

    def __init__(self, path: Path, threads: int, concurrent_threads: int, spin_wait: bool = False) -> None:
        self._alone = make_session(path, threads, spin_wait)
        same = concurrent_threads == threads
        self._concurrent = self._alone if same else make_session(path, concurrent_threads, spin_wait)
        self._lock = threading.Lock()
        self._running = 0
        self.runs = {"alone": 0, "concurrent": 0}  # which session served: read by the tests

    @property
    def session(self) -> ort.InferenceSession:
        """The wide session: its inputs, outputs and metadata describe the model."""
        return self._alone

    def run(self, output_name: str, feeds: Mapping[str, Any]) -> FloatArray:
        with self._lock:
            alone = self._running == 0
            self._running += 1
            self.runs["alone" if alone else "concurrent"] += 1
        try:
            session = self._alone if alone else self._concurrent
            (output,) = session.run([output_name], dict(feeds))
            return np.asarray(output, dtype=np.float32)
        finally:
            with self._lock:
                self._running -= 1


def make_session(path: Path, threads: int, spin_wait: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is a chain: parallelism lives inside each op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads look busy to the OS: on a shared box they slow the other model process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
