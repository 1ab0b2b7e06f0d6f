"""`converter healthcheck`: asks this container's own /readyz, on the configured port.

The image's HEALTHCHECK runs it, so a container started with another CONVERTER_PORT
(or CONVERTER_HOST) is probed where the server really listens.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from converter.config import Config

# A wildcard bind is reachable on loopback; probing the wildcard address itself is not portable.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def readyz_url(config: Config) -> str:
    """The /readyz URL of the server this configuration starts."""
    host = _LOOPBACK.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.port}/readyz"


def check(config: Config, timeout: float = 4.0) -> tuple[bool, str]:
    """(ready, what was seen): True only for a 200 from /readyz."""
    url = readyz_url(config)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            body = response.read(500).decode("utf-8", "replace")
            return response.status == 200, f"{url}: {response.status} {body}"
    except urllib.error.HTTPError as exc:
        body = exc.read(500).decode("utf-8", "replace")
        return False, f"{url}: {exc.code} {body}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"{url}: {reason}"
