"""`roadworthy demo --parity`: the demo model's int8 ONNX copy against the demo model."""

from __future__ import annotations

import json

import pytest

from roadworthy.cli import main


@pytest.mark.slow
def test_demo_parity_compares_the_int8_copy_with_the_demo_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--parity", "--out", str(tmp_path)])
    assert int(exc.value.code or 0) == 0, capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model"]["format"] == "onnx" and report["model"]["path"].endswith("signnet.int8.onnx")
    assert report["reference_model"]["path"] == "roadworthy.demo:signnet"
    assert (tmp_path / "shipped" / "signnet.int8.onnx").is_file()
    m = report["metrics"]
    v, lo, hi = (m[f"parity.clean.disagreement{s}"] for s in ("", "_ci_low", "_ci_high"))
    assert 0 <= lo <= v <= hi <= 1 and m["parity.clean.disagreement_n"] == report["data"]["n_samples"]
    assert 0 < m["parity.clean.max_abs_logit_diff"] < 5  # int8 rounding moves logits, a little
    assert "parity.disagreement" in m and "parity.fuzz.disagreements_per_10k" in m
    assert {c["suite"] for c in report["checks"]} == {"sanity", "clean", "parity"}
