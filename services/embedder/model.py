"""The ONNX backbone: (N, 3, crop, crop) float32 in, (N, dim) L2-normalised float32 out."""

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from services.embedder.manifest import ResolvedModel
from services.embedder.preprocess import PreprocessSpec, Tensor

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]  # (N, dim)
Item = npt.NDArray[np.float32]  # one preprocessed image, (3, crop, crop)

# Below this a norm is numerical noise: such a vector is returned as zeros instead of amplified noise.
NORM_EPS = 1e-12


class ModelError(ValueError):
    """The model file does not match what its manifest entry promises."""


def l2_normalise(vectors: npt.NDArray[Any]) -> Vectors:
    """(N, D) -> (N, D) float32 with unit rows; an all-zero row stays all zeros (no NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    safe = np.where(norms > NORM_EPS, norms, np.float32(1.0))
    return np.where(norms > NORM_EPS, vectors / safe, np.float32(0.0)).astype(np.float32)


def flatten_features(output: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """(N, D) or (N, D, 1, 1) pooled features -> (N, D). Anything else is not a pooled embedding."""
    if output.ndim >= 2 and all(side == 1 for side in output.shape[2:]):
        return output.reshape(output.shape[0], output.shape[1])
    raise ModelError(f"expected a pooled output of shape [N, D] or [N, D, 1, 1], got {list(output.shape)}")


class OnnxEmbedder:
    """One onnxruntime session plus the facts the service needs about it (id, dim, preprocessing)."""

    def __init__(self, model: ResolvedModel, threads: int = 2, run_chunk: int = 4) -> None:
        """``threads`` single-threaded runs go in parallel, each on a chunk of at most ``run_chunk``
        images of the batch: a CNN scales better over images than over the ops of one run (no
        per-op synchronisation, no spinning threads stealing the cores other processes need)."""
        if threads < 1 or run_chunk < 1:
            raise ValueError(f"need threads >= 1 and run_chunk >= 1, got {threads}, {run_chunk}")
        entry = model.entry
        self.model_id = model.model_id
        self.preprocessing: PreprocessSpec = entry.preprocessing
        self._input, self._output = entry.input, entry.output
        self._session = _open_session(model)
        self._fixed_batch = self._check_input()
        self._threads, self._run_chunk = threads, run_chunk
        self._pool = ThreadPoolExecutor(threads, "embedder-run") if threads > 1 else None
        self.dim = self._read_dim()
        if entry.dim is not None and entry.dim != self.dim:
            raise ModelError(
                f"model {entry.name!r} produces {self.dim}-d vectors but its manifest entry says dim = "
                f"{entry.dim}; fix the entry (the dim is always read from the model)"
            )
        log.info("loaded %s from %s: dim %d, input %s", self.model_id, model.path, self.dim, self._input)

    def embed(self, batch: Tensor | Sequence[Item]) -> Vectors:
        """(N, 3, crop, crop) float32, or N such (3, crop, crop) items -> (N, dim) float32, every
        row unit norm (or zero). Items are stacked chunk by chunk on the run threads: no copy of
        the whole batch on the caller's thread (the micro-batcher hands over items)."""
        count = len(batch)
        if count == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        step = self._fixed_batch or min(self._run_chunk, -(-count // self._threads))
        chunks = [batch[start : start + step] for start in range(0, count, step)]
        if self._pool is None or len(chunks) == 1:
            parts = [self._run(chunk) for chunk in chunks]
        else:  # onnxruntime releases the GIL in run(): the chunks really run in parallel
            parts = list(self._pool.map(self._run, chunks))
        return l2_normalise(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def warmup(self, batch_sizes: Iterable[int] = (1,)) -> None:
        """First runs allocate memory and pick kernels; do them before health says SERVING."""
        crop = self.preprocessing.crop
        for size in batch_sizes:
            self.embed(np.zeros((size, 3, crop, crop), dtype=np.float32))

    def _run(self, batch: Tensor | Sequence[Item]) -> npt.NDArray[Any]:
        tensor = batch if isinstance(batch, np.ndarray) else np.stack(batch)  # (n, 3, crop, crop)
        (output,) = self._session.run([self._output], {self._input: tensor})
        return flatten_features(np.asarray(output))  # (n, dim), not yet normalised

    def _check_input(self) -> int | None:
        """Validates the input tensor against the preprocessing; returns its fixed batch size, if any."""
        (meta,) = [i for i in self._session.get_inputs() if i.name == self._input]
        crop = self.preprocessing.crop
        if meta.type != "tensor(float)" or len(meta.shape) != 4:
            raise ModelError(f"input {self._input!r} is {meta.type} {meta.shape}; expected float32 [N,3,H,W]")
        channels, height, width = meta.shape[1:]
        if isinstance(channels, int) and channels != 3:
            raise ModelError(f"input {self._input!r} takes {channels} channels; expected 3")
        if any(isinstance(side, int) and side != crop for side in (height, width)):
            raise ModelError(
                f"input {self._input!r} is {height}x{width} but the manifest crops {crop}x{crop}"
            )
        batch = meta.shape[0]
        return batch if isinstance(batch, int) and batch > 0 else None

    def _read_dim(self) -> int:
        """The dim from the output shape, or from a probe run when the graph leaves it dynamic."""
        (meta,) = [o for o in self._session.get_outputs() if o.name == self._output]
        if len(meta.shape) >= 2 and all(isinstance(side, int) for side in meta.shape[1:]):
            return int(flatten_features(np.empty([1, *meta.shape[1:]])).shape[1])
        crop = self.preprocessing.crop
        return int(self._run(np.zeros((1, 3, crop, crop), dtype=np.float32)).shape[1])


def _open_session(model: ResolvedModel) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread per run: parallelism comes from concurrent runs over chunks of the batch (embed).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(model.path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
        raise ModelError(f"cannot load ONNX model {model.path}: {exc}") from exc
    _check_names(model, session)
    return session


def _check_names(model: ResolvedModel, session: ort.InferenceSession) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    entry = model.entry
    if entry.input not in inputs or entry.output not in outputs:
        raise ModelError(
            f"model {entry.name!r} ({model.path.name}) has inputs {inputs} and outputs {outputs}, "
            f"but its manifest entry names input {entry.input!r} and output {entry.output!r}"
        )
