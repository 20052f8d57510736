"""Where ../shared is: beside the repository (as laid out for developers and CI)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("COMETBENCH_SHARED", ROOT.parent / "shared"))
PARITY_CORPUS = SHARED / "parity" / "cometql-4.09.jsonl"
SEED = SHARED / "seed" / "call-procedure.ru.md"
