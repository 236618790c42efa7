"""experiments/parallel_in_time.py --quick runs and writes what it claims."""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_mode(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))  # the scripts import `_common` top-level
    module = importlib.import_module("parallel_in_time")
    result = module.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "parallel_in_time.png").exists()
    assert set(result["curves"]) == {"rnn", "gru", "lstm", "rnn_chaotic"}
    # Newton on a contracting net at T = 10 is exact within T iterations; here within 4.
    assert all(v is not None for v in result["newton_iterations_to_1e-10"].values())
    assert len(result["anchors"]) == 2
