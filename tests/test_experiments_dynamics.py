"""The dynamics experiments in --quick mode: edge_of_chaos, lyapunov_gradients,
lorenz_lyapunov, flipflop_fixed_points.

Each script runs in this process into a temporary folder; its JSON is
checked against what quick mode reaches, partly against references the
script does not use for the same number (the spectral radius of W by
`eigvals` against the QR recursion's lambda_1 below the edge; the
eigenvalue moduli against the stability labels). The full-mode anchors
(N = 2048, 1000 time units of Lorenz, trained predictors) are checked by
running the scripts, not here.
"""

from __future__ import annotations

import importlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

# Experiments in quick mode, end to end: the integration tier (`pytest -m integration`, run by CI as its
# second command), not the default run.
pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("dynamics_results")


def run_quick(name: str, out: Path) -> dict:
    result = importlib.import_module(name).main(["--quick", "--out", str(out)])
    on_disk = json.loads((out / f"{name}.json").read_text())
    assert on_disk == result and on_disk["quick"] is True and on_disk["config"]
    for figure in on_disk["figures"]:
        data = (out / figure).read_bytes()
        assert data[:8] == PNG_MAGIC, figure
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300 and len(data) > 20_000, (figure, width, height)
    for row in on_disk["anchors"]:
        assert {"anchor", "expected", "measured", "pass"} <= set(row)
    report = importlib.import_module(name).report(on_disk)
    assert report.findings and report.anchors == on_disk["anchors"]
    return on_disk


def test_edge_of_chaos(out):
    r = run_quick("edge_of_chaos", out)
    gains = r["config"]["gains"]
    for size, s in r["sizes"].items():
        lam = np.asarray(s["lambda_1"])
        # Below the edge the state decays to 0, where J = g W^T: lambda_1 = log(g rho(W)),
        # rho by eigvals in the script, independent of the QR recursion.
        assert lam[gains.index(0.5)] == pytest.approx(
            np.log(0.5 * s["spectral_radius_W"]), abs=2e-3
        )
        assert lam[gains.index(3.0)] > 0.2  # chaotic (mean field 0.31)
        # Quick mode: N <= 256 and a coarse grid, where lambda_1 stays near 0 (finite-size
        # cycles) a little past g = 1; the 0.05 anchor is for N = 2048 in full mode.
        assert 0.9 <= s["crossing"] <= 1.5, (size, s["crossing"])


def test_lyapunov_gradients(out):
    r = run_quick("lyapunov_gradients", out)
    for label, m in r["models"].items():
        assert abs(m["grad_slope"] - m["lambda_1"]) <= r["config"]["tolerance"], label
        assert m["grad_slope_stderr"] < r["config"]["tolerance"], label
    assert r["models"]["rnn g=4.0"]["lambda_1"] > 0 > r["models"]["rnn g=0.5"]["lambda_1"]
    assert all(row["pass"] for row in r["anchors"])


def test_lorenz_lyapunov(out):
    r = run_quick("lorenz_lyapunov", out)
    assert all(row["pass"] for row in r["anchors"] if row["anchor"].startswith("Lorenz (RK4)"))
    assert r["true"]["sum"] == pytest.approx(-(10 + 1 + 8 / 3), abs=5e-3)
    assert np.sum(r["true"]["exponents"]) == pytest.approx(r["true"]["sum"], abs=1e-9)
    for label, m in r["models"].items():
        assert len(m["exponents"]) == r["config"]["k"] and np.all(np.isfinite(m["exponents"]))
        assert np.all(np.diff(m["exponents"]) <= 0.05), label  # QR order, up to finite-time noise


def test_flipflop_fixed_points(out):
    r = run_quick("flipflop_fixed_points", out)
    for label, m in r["models"].items():
        assert m["metrics"]["accuracy"] > 0.9, label
        kinds, moduli = m["kind"], np.asarray(m["max_modulus"])
        assert len(kinds) == len(moduli) == len(m["speed"]) >= 2
        assert np.all(np.asarray(m["speed"]) < r["config"]["tol"])
        # Labels agree with the eigenvalues: stable iff every modulus < 1.
        assert [k == "stable" for k in kinds] == list(moduli < 1), label
        assert [u == 0 for u in m["unstable_modes"]] == [k == "stable" for k in kinds]
        assert m["n_stable"] == kinds.count("stable") >= 2
        assert len(m["stable_corners"]) <= m["n_stable"]
