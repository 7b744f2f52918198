"""Where the shared models and datasets live: ``../shared`` beside the checkout, or $VS_SHARED_DIR."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VS_SHARED_DIR", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
DATASETS = SHARED / "datasets"
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"  # screenshots and tables for a person (gitignored)
