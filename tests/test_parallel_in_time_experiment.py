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
    # Newton on contracting nets: the residual falls by 1e3 or more within the quick run's 4 iterations.
    for name in ("rnn", "gru", "lstm"):
        newton = result["curves"][name]["newton"]
        assert newton[-1] < 1e-3 * newton[0]
    assert len(result["anchors"]) == 2
