"""Embedder service: turns images and crops into L2-normalised vectors with an ONNX CNN backbone."""
