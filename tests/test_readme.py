"""The README's walk-through, run exactly as written against a served app."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.support.outputs import pdf_text
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
def test_walkthrough_works_as_written(service: ServedApp, tmp_path: Path) -> None:
    """Upload, convert, download: the curl commands produce a PDF of the repository's sample."""
    script = _walkthrough()
    assert "BASE=http://127.0.0.1:8080" in script
    assert "-F file=@examples/sample.docx" in script, "the walk-through must use the sample"
    # The only changes: point BASE at the test server instead of port 8080, and write the
    # download into the test's directory instead of the repository.
    script = script.replace("BASE=http://127.0.0.1:8080", f"BASE={service.url}")
    script = script.replace("-o sample.pdf", f"-o {tmp_path}/sample.pdf")
    script = script.replace("head -c 5 sample.pdf", f"head -c 5 {tmp_path}/sample.pdf")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO,
                          env=service.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "%PDF-"
    pdf = (tmp_path / "sample.pdf").read_bytes()
    assert len(PdfReader(io.BytesIO(pdf)).pages) == 2
    assert "This is page two" in pdf_text(pdf)


def test_sample_is_what_its_script_writes(tmp_path: Path) -> None:
    """examples/sample.docx is exactly the output of examples/make_sample.py."""
    out = tmp_path / "sample.docx"
    subprocess.run([sys.executable, str(REPO / "examples/make_sample.py"), str(out)],
                   check=True, capture_output=True, timeout=60)
    assert out.read_bytes() == (REPO / "examples/sample.docx").read_bytes()
