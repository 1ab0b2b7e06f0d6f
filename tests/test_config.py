"""Configuration: validation names the variable to fix; the README lists every variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter import config
from converter.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_are_the_embedded_setup() -> None:
    """No environment: SQLite under ./data, local storage, 127.0.0.1:8080."""
    cfg = config.load({})
    assert (cfg.host, cfg.port, cfg.storage) == ("127.0.0.1", 8080, "local")
    assert cfg.sqlalchemy_url.startswith("sqlite:///") and cfg.sqlalchemy_url.endswith(
        "data/converter.db")
    assert cfg.url_ttl == 3600 and cfg.max_upload_mb == 100 and cfg.conversion_timeout == 120
    assert cfg.workers >= 1


@pytest.mark.parametrize(("env", "named"), [
    ({"CONVERTER_PORT": "eighty"}, "CONVERTER_PORT"),
    ({"CONVERTER_PORT": "0"}, "CONVERTER_PORT"),
    ({"CONVERTER_WORKERS": "-2"}, "CONVERTER_WORKERS"),
    ({"CONVERTER_CONVERSION_TIMEOUT": "soon"}, "CONVERTER_CONVERSION_TIMEOUT"),
    ({"CONVERTER_STORAGE": "ftp"}, "CONVERTER_STORAGE"),
    ({"CONVERTER_LOG_FORMAT": "xml"}, "CONVERTER_LOG_FORMAT"),
    ({"CONVERTER_STORAGE": "s3"}, "CONVERTER_S3_BUCKET"),
    ({"CONVERTER_BOOTSTRAP_KEY": "hunter2"}, "CONVERTER_BOOTSTRAP_KEY"),
    ({"CONVERTER_PUBLIC_URL": "example.com"}, "CONVERTER_PUBLIC_URL"),
    ({"CONVERTER_POTR": "8080"}, "CONVERTER_POTR"),
])
def test_invalid_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    """The operator learns which variable to fix."""
    with pytest.raises(ConfigError, match=named):
        config.load(env)


def test_serve_refuses_a_bad_setting_with_exit_code_2(tmp_path: Path) -> None:
    """`converter serve` stops before starting anything when configuration is invalid."""
    import subprocess
    import sys

    done = subprocess.run([str(Path(sys.executable).with_name("converter")), "serve"],
                          env={"CONVERTER_PORT": "nope", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "CONVERTER_PORT" in done.stderr


def test_readme_lists_every_variable() -> None:
    """Each CONVERTER_ variable has a row in the README's configuration table, with its default."""
    text = README.read_text()
    missing = [s.env for s in config.SETTINGS
               if f"| `{s.env}` | `{s.default or '(empty)'}` |" not in text]
    assert not missing
