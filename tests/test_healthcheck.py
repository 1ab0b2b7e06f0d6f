"""`converter healthcheck` (the image's HEALTHCHECK) probes /readyz where the server listens."""

from __future__ import annotations

import subprocess

import pytest

from converter import config
from converter.healthcheck import readyz_url
from tests.support.served import CONVERTER, REPO, ServedApp, free_port


def _healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONVERTER, "healthcheck"], env=env, capture_output=True, text=True,
                          timeout=30, cwd=REPO)


@pytest.mark.parametrize(("host", "url"), [
    ("0.0.0.0", "http://127.0.0.1:9191/readyz"),
    ("::", "http://[::1]:9191/readyz"),
    ("127.0.0.1", "http://127.0.0.1:9191/readyz"),
    ("10.1.2.3", "http://10.1.2.3:9191/readyz"),
    ("fd00::5", "http://[fd00::5]:9191/readyz"),
])
def test_readyz_url_follows_host_and_port(host: str, url: str) -> None:
    """A wildcard bind is probed on loopback; any other address as given."""
    cfg = config.load({"CONVERTER_HOST": host, "CONVERTER_PORT": "9191"})
    assert readyz_url(cfg) == url


@pytest.mark.engine
def test_healthy_on_a_non_default_port(service: ServedApp) -> None:
    """The served app listens on a random CONVERTER_PORT; the check finds it there."""
    assert service.port != 8080
    done = _healthcheck(service.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f":{service.port}/readyz: 200" in done.stdout and '"ready"' in done.stdout


@pytest.mark.engine
def test_unhealthy_when_nothing_listens_on_the_port(service: ServedApp) -> None:
    """Same settings but a port nobody serves: exit 1, saying what it tried."""
    port = free_port()
    done = _healthcheck({**service.env, "CONVERTER_PORT": str(port)})
    assert done.returncode == 1, done.stdout
    assert f"127.0.0.1:{port}/readyz" in done.stdout


@pytest.mark.engine
def test_healthy_behind_a_wildcard_bind(serve: type[ServedApp]) -> None:
    """The image binds 0.0.0.0 on CONVERTER_PORT; the check probes it over loopback."""
    app = serve(env={"CONVERTER_HOST": "0.0.0.0"}, workers=1).start()
    done = _healthcheck(app.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"http://127.0.0.1:{app.port}/readyz: 200" in done.stdout
