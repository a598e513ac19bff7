"""The benchmark's smoke mode runs end to end against a real pooldrop (no nginx needed).

It needs ``wrk`` (the load generator) and PostgreSQL on 127.0.0.1:5432 (``small-pg``); when either
is missing the run fails and says how to install or start it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("large", "small", "batch", "fanout", "download", "archive", "small-pg")
ALLOWED = ("ok", "n/a (endpoint missing)")


def test_smoke_mode_prints_one_row_per_scenario(tmp_path: Path) -> None:
    summary = tmp_path / "smoke.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--pooldrop-only",
            "--work-dir",
            str(tmp_path / "work"),
            "--summary",
            str(summary),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env={k: v for k, v in os.environ.items() if not k.startswith("POOLDROP_")},
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "| scenario | pooldrop | nginx / baseline | ratio | target | result |" in proc.stdout
    rows = {r["name"]: r for r in json.loads(summary.read_text())["scenarios"]}
    assert set(rows) == set(SCENARIOS), output[-2000:]
    for name, row in rows.items():
        assert row["status"] in ALLOWED, f"{name}: {row['status']}\n{output[-3000:]}"
        assert f"| `{name}` |" in proc.stdout
    measured = [r for r in rows.values() if r["status"] == "ok"]
    # Uploads exist from the first feature on: at least `small` must have measured something.
    assert measured, output[-2000:]
    assert all(r["pooldrop"] for r in measured)
