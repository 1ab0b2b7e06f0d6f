"""LibreOffice's allocator (converter/engine/allocator.py): jemalloc when installed, by choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from converter import config
from converter.engine import allocator
from converter.errors import ConfigError, EngineStartError
from tests.support.served import ServedApp


def _maps_jemalloc(pid: int) -> bool:
    """Whether the process has libjemalloc mapped (it was preloaded at exec)."""
    return allocator.LIBRARY in Path(f"/proc/{pid}/maps").read_text()


def test_jemalloc_is_installed_where_the_service_runs() -> None:
    """./run and the image install libjemalloc2, so auto finds it here."""
    found = allocator.jemalloc_path()
    assert found is not None, "libjemalloc2 is not installed: ./run installs it (apt)"
    assert allocator.find_allocator("auto") == found
    assert allocator.find_allocator("jemalloc") == found


def test_system_preloads_nothing() -> None:
    """CONVERTER_SOFFICE_ALLOCATOR=system: glibc's malloc, nothing preloaded."""
    assert allocator.find_allocator("system") is None
    assert allocator.allocator_name(None) == "system"


def test_jemalloc_demanded_but_missing_names_the_package_and_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the library, jemalloc refuses to start; auto falls back to the system's."""
    monkeypatch.setattr(allocator, "jemalloc_path", lambda: None)
    with pytest.raises(EngineStartError) as raised:
        allocator.find_allocator("jemalloc")
    assert "CONVERTER_SOFFICE_ALLOCATOR" in str(raised.value)
    assert "libjemalloc2" in str(raised.value)
    assert allocator.find_allocator("auto") is None


def test_an_unknown_allocator_is_a_config_error_listing_the_choices() -> None:
    """The value is checked at startup with the other settings."""
    with pytest.raises(ConfigError) as raised:
        config.load({"CONVERTER_SOFFICE_ALLOCATOR": "tcmalloc"})
    message = str(raised.value)
    assert "CONVERTER_SOFFICE_ALLOCATOR" in message
    assert all(choice in message for choice in config.SOFFICE_ALLOCATORS)
    assert config.load({}).soffice_allocator == "auto"


@pytest.mark.engine
def test_the_default_service_runs_libreoffice_under_jemalloc(service: ServedApp,
                                                             corpus: Path) -> None:
    """Every soffice.bin of a default service has jemalloc mapped, and converts."""
    pids = service.soffice_pids()
    assert pids
    assert all(_maps_jemalloc(pid) for pid in pids)
    assert service.convert(service.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf").ok


@pytest.mark.engine
def test_system_allocator_leaves_libreoffice_on_glibc(serve: type[ServedApp],
                                                      corpus: Path) -> None:
    """CONVERTER_SOFFICE_ALLOCATOR=system: no jemalloc in LibreOffice, conversions as before."""
    app = serve(workers=1, env={"CONVERTER_SOFFICE_ALLOCATOR": "system",
                                "CONVERTER_LOG_LEVEL": "INFO"}).start()
    pids = app.soffice_pids()
    assert pids
    assert not any(_maps_jemalloc(pid) for pid in pids)
    assert "LibreOffice runs on the system malloc" in app.log()
    assert app.convert(app.upload_ok(corpus / "xlsx/SampleSS.xlsx")["id"], "pdf").ok
