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
Model = Path | bytes  # an ONNX file, or a serialised model (a reshaped variant)

_allocator_lock = threading.Lock()
_allocator_registered = False


class RunCounter:
    """Runs in flight over every session of one detector (all its input shapes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self.runs = {"alone": 0, "concurrent": 0}  # which session served: read by the tests

    def start(self) -> bool:
        """Counts a run in; True when no other run is in flight."""
        with self._lock:
            alone = self._running == 0
            self._running += 1
            self.runs["alone" if alone else "concurrent"] += 1
            return alone

    def done(self) -> None:
        with self._lock:
            self._running -= 1


class LoadAwareSession:
    """Thread-safe; ``run`` picks the session by how many runs of ``counter`` are in flight."""

    def __init__(
        self,
        model: Model,
        threads: int,
        concurrent_threads: int,
        spin_wait: bool = False,
        counter: RunCounter | None = None,
    ) -> None:
        self._alone = make_session(model, threads, spin_wait)
        same = concurrent_threads == threads
        self._concurrent = self._alone if same else make_session(model, concurrent_threads, spin_wait)
        self.counter = counter or RunCounter()

    @property
    def session(self) -> ort.InferenceSession:
        """The wide session: its inputs, outputs and metadata describe the model."""
        return self._alone

    @property
    def runs(self) -> dict[str, int]:
        return self.counter.runs

    def run(self, output_name: str, feeds: Mapping[str, Any]) -> FloatArray:
        alone = self.counter.start()
        try:
            session = self._alone if alone else self._concurrent
            (output,) = session.run([output_name], dict(feeds))
            return np.asarray(output, dtype=np.float32)
        finally:
            self.counter.done()


def make_session(model: Model, threads: int, spin_wait: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # the graph is a chain: parallelism lives inside each op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads look busy to the OS: on a shared box they slow the other model process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    # One memory arena for every session of the process (one per input shape, wide and narrow),
    # instead of one each that stays at its peak.
    _share_allocator()
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _share_allocator() -> None:
    global _allocator_registered
    with _allocator_lock:
        if not _allocator_registered:
            memory = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, -1, -1, -1))
            _allocator_registered = True
