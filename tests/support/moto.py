"""A real moto S3 server over HTTP, for storage and scale-out tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from converter.engine.ports import PortReservation

BUCKET = "converter-storage-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client for the moto server."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class MotoServer:
    """moto's S3 server as a subprocess on a fixed port: killed and started again at will."""

    def __init__(self, log: Path, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        # Held for this object's life, so a restart finds its port still free
        # (engine/ports.py); werkzeug's server binds with SO_REUSEADDR as that requires.
        self._port = None if port else PortReservation()
        self.port = port or self._port.port  # type: ignore[union-attr]
        self.extra_env = env or {}
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (an empty one: moto keeps nothing across restarts) with BUCKET."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS, **self.extra_env})
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"moto server exited with {self.proc.returncode}:\n"
                            f"{self.log.read_text()}")
            try:
                if requests.get(self.url, timeout=5).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass  # still starting: the first request also waits for moto's lazy imports
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer on {self.url} in {timeout:g}s:\n"
                            f"{self.log.read_text()}")
            time.sleep(0.1)
        raw_client(self.url).create_bucket(Bucket=BUCKET)

    def kill(self) -> None:
        """SIGKILL the server: storage vanishes, with whatever it held."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the server (killed if it does not stop in 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server subprocess with BUCKET created; fails, never skips, if it won't start."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@dataclass(frozen=True)
class AuthenticatedS3:
    """A moto server that checks signatures, with one IAM user allowed everything on s3."""

    url: str
    bucket: str
    access_key_id: str
    secret_access_key: str


# Unauthenticated requests moto serves before it starts checking keys: enough for the
# readiness probe, the bucket and the IAM user; the rest are used up right after.
_SETUP_ACTIONS = 8


@pytest.fixture(scope="session")
def moto_authenticated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthenticatedS3]:
    """moto's S3 with authentication on, so wrong keys are refused as AWS refuses them."""
    server = MotoServer(tmp_path_factory.mktemp("moto-auth") / "server.log",
                        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS)})
    try:
        server.start()
        iam = boto3.client("iam", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        iam.create_user(UserName="connector")
        iam.put_user_policy(UserName="connector", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="connector")["AccessKey"]
        anonymous = raw_client(server.url)  # "testing" is no IAM user: refused once counting
        for _ in range(_SETUP_ACTIONS + 1):
            try:
                anonymous.list_buckets()
            except ClientError:
                break
        else:
            pytest.fail("moto never started checking credentials")
        yield AuthenticatedS3(server.url, BUCKET, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()
