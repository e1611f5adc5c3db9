"""`recsys filing` from the registered model (Art. 24 (draft 20)): every field the article names, and clear errors."""

import json
import subprocess

from tests.conftest import RECSYS


def test_filing_package_from_the_registered_model(model_env, tmp_path):
    result = subprocess.run([RECSYS, "filing", "--out", str(tmp_path / "f")], env=model_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    filing = json.loads((tmp_path / "f" / "filing.json").read_text())
    text = json.dumps(filing).lower()
    for field in ("provider", "service_form", "application_field", "algorithm_type", "self_assessment"):
        assert field in text, field
    assert (tmp_path / "f" / "filing.html").exists() and (tmp_path / "f" / "filing.md").exists()
    # Without --audit, the self-assessment carries the periodic review (Art. 8) training ran on this model.
    compliance = filing["self_assessment"]["compliance"]
    assert compliance["article"] == "Art. 8" and compliance["passed"] is True
    assert {c["name"] for c in compliance["checks"]} >= {"dispersal_violation_rate", "dominant_category_amplification"}
    again = subprocess.run([RECSYS, "filing", "--out", str(tmp_path / "g"), "--since", str(tmp_path / "nope")],
                           env=model_env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--since" in again.stderr
