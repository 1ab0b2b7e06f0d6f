"""The README's walk-through, run exactly as written against a served app."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.served import REPO, ServedApp


def _walkthrough() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Walk-through", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "README has no bash block in its walk-through"
    return match.group(1)


def test_readme_has_exactly_two_setup_commands() -> None:
    """The quick start gives one command to serve and one to test."""
    quick = (REPO / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick, re.DOTALL)
    assert [b.strip() for b in blocks] == ["./run serve", "./run test"]


@pytest.mark.engine
def test_walkthrough_works_as_written(service: ServedApp, corpus: Path, tmp_path: Path) -> None:
    """Upload, convert, download: the curl commands produce a PDF."""
    script = _walkthrough()
    assert "BASE=http://127.0.0.1:8080" in script
    # The only change: point BASE at the test server instead of port 8080.
    script = script.replace("BASE=http://127.0.0.1:8080", f"BASE={service.url}")
    script = script.replace("-o SampleDoc.pdf", f"-o {tmp_path}/SampleDoc.pdf")
    script = script.replace("head -c 5 SampleDoc.pdf", f"head -c 5 {tmp_path}/SampleDoc.pdf")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO,
                          env=service.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "%PDF-"
    assert (tmp_path / "SampleDoc.pdf").read_bytes().startswith(b"%PDF-")
