"""Key revocation: refused on the very next request, even by a process that cached the key."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from converter.db.engine import connect
from converter.errors import Unauthorized
from converter.service.keys import KeyStore
from converter.service.revocations import RevocationListener
from tests.support.postgres import fresh_database
from tests.support.served import CONVERTER, ServedApp, error_of


@pytest.fixture
def two_stores(tmp_path: Path) -> Iterator[tuple[KeyStore, KeyStore]]:
    """Two KeyStores on one SQLite database and data directory: the server and the CLI."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    server_db, cli_db = connect(url), connect(url)
    yield KeyStore(server_db, tmp_path), KeyStore(cli_db, tmp_path)
    server_db.dispose()
    cli_db.dispose()


def test_revocation_beats_the_verified_key_cache(two_stores: tuple[KeyStore, KeyStore]) -> None:
    """The server cached the key; another store revokes it; the next check refuses it."""
    server, cli = two_stores
    key_id, raw = cli.create("acme", "ann")
    _other_id, other = cli.create("acme", "bob")
    assert server.authenticate(raw).key_id == key_id
    assert server.authenticate(raw).key_id == key_id  # now answered from the cache
    assert server.authenticate(other).user_id == "bob"
    assert cli.revoke(key_id) is True
    with pytest.raises(Unauthorized):
        server.authenticate(raw)
    assert server.authenticate(other).user_id == "bob"  # the others still work
    assert cli.revoke(key_id) is True  # revoking twice is harmless
    assert cli.revoke("key_missing") is False
    listed = {k.id: k for k in cli.list()}
    assert listed[key_id].revoked_at is not None and listed[_other_id].revoked_at is None
    assert listed[key_id].prefix == raw[:12] and listed[key_id].workspace == "acme"


def test_every_revocation_changes_the_marker(two_stores: tuple[KeyStore, KeyStore]) -> None:
    """Two revocations in quick succession are both seen (not lost to timestamp granularity)."""
    server, cli = two_stores
    ids = [cli.create("acme", f"user{i}") for i in range(2)]
    for _key_id, raw in ids:
        server.authenticate(raw)
    cli.revoke(ids[0][0])
    with pytest.raises(Unauthorized):
        server.authenticate(ids[0][1])
    server.authenticate(ids[1][1])  # cached again under the new marker
    cli.revoke(ids[1][0])
    with pytest.raises(Unauthorized):
        server.authenticate(ids[1][1])


@pytest.mark.postgres
def test_a_revocation_reaches_another_host_through_postgres(tmp_path: Path) -> None:
    """Separate data directories (two hosts), one database: NOTIFY clears the other's cache."""
    with fresh_database() as url:
        server_db, other_db, cli_db = connect(url), connect(url), connect(url)
        try:
            server = KeyStore(server_db, tmp_path / "host-a")
            deaf = KeyStore(other_db, tmp_path / "host-b")  # no listener: the control
            cli = KeyStore(cli_db, tmp_path / "host-c")
            listener = RevocationListener(server_db.url, server.invalidate)
            listener.start()
            try:
                assert listener.wait_listening(10)
                key_id, raw = cli.create("acme", "ann")
                for store in (server, deaf):
                    store.authenticate(raw)
                    store.authenticate(raw)  # cached
                revoked_at = time.monotonic()
                cli.revoke(key_id)
                while True:
                    try:
                        server.authenticate(raw)
                    except Unauthorized:
                        break
                    assert time.monotonic() - revoked_at < 2, "NOTIFY did not arrive"
                    time.sleep(0.001)
                # Without the listener the cache still answers (until VERIFIED_TTL).
                assert deaf.authenticate(raw).key_id == key_id
            finally:
                listener.stop()
        finally:
            for db in (server_db, other_db, cli_db):
                db.dispose()


def _cli(app: ServedApp, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONVERTER, *args], env=app.env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.engine
def test_keys_create_list_revoke_against_a_served_app(service: ServedApp) -> None:
    """`converter keys revoke` in another process: the server refuses the key at once."""
    created = _cli(service, "keys", "create", "--workspace", "revoking", "--user", "rita")
    assert created.returncode == 0, created.stderr
    raw = created.stdout.strip()
    assert raw.startswith("sk_live_") and "\n" not in raw
    key_id = created.stderr.split()[2]
    assert key_id.startswith("key_"), created.stderr
    session = requests.Session()
    session.headers["X-API-Key"] = raw
    for _ in range(3):  # fills and then hits the server's verified-key cache
        assert session.get(f"{service.url}/v1/files", timeout=10).status_code == 200

    listed = _cli(service, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()[1:]}
    assert rows[key_id][1:4] == [raw[:12], "revoking", "rita"] and rows[key_id][5] == "-"
    assert raw not in listed.stdout

    revoked = _cli(service, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    refused = session.get(f"{service.url}/v1/files", timeout=10)
    assert refused.status_code == 401
    assert error_of(refused)["type"] == "unauthorized"
    # The client CLI with the revoked key: refused, exit 3.
    client_env = {k: v for k, v in service.env.items() if not k.startswith("CONVERTER_")}
    client_env.update({"CONVERTER_URL": service.url, "CONVERTER_API_KEY": raw})
    as_client = subprocess.run([CONVERTER, "runs", "list"], env=client_env, capture_output=True,
                               text=True, timeout=60)
    assert as_client.returncode == 3 and "unauthorized" in as_client.stderr
    listed = _cli(service, "keys", "list")
    assert [r for r in listed.stdout.splitlines() if r.startswith(key_id)][0].split("\t")[5] != "-"
    # The bootstrap key is untouched.
    assert service.request("GET", "/v1/files").status_code == 200

    missing = _cli(service, "keys", "revoke", "key_doesnotexist")
    assert missing.returncode == 3 and "converter keys list" in missing.stderr
