"""HTTP under the client: one requests session, retries with a cap, typed errors.

Retried: connection errors, 429, 502, 503 and 507 (the disk guard), after the server's
``Retry-After`` when it gives one, else after an exponential backoff with jitter. Two caps bound the
whole call: ``max_attempts`` and ``max_wait`` (total seconds slept). A Retry-After
longer than what remains of ``max_wait`` ends the retries at once, so the caller
gets the error (and its ``retry_after``) instead of a silent long sleep.

POSTs are retried too: every creating POST carries an Idempotency-Key that stays
the same across its attempts (the server replays runs and exports; a repeated
upload or conversion is harmless).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from converter.client.errors import ServiceUnreachable, from_response, retry_after

USER_AGENT = "converter-client/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client retries transient failures."""

    max_attempts: int = 5
    max_wait: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0
    statuses: frozenset[int] = frozenset({429, 502, 503, 507})

    def backoff_delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based) when the server gave none."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        # Jitter keeps many clients released by the same 503 from returning together.
        return random.uniform(ceiling / 2, ceiling)


class Transport:
    """Sends requests to one service with its key, retrying what is safe to retry."""

    def __init__(self, base_url: str, api_key: str, timeout: float, retry: RetryPolicy,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self._sleep = sleep

    def request(self, method: str, path_or_url: str, *, auth: bool = True,
                rewind: Callable[[], None] | None = None, **kwargs: Any) -> requests.Response:
        """Send and return a 2xx/3xx response; raise ApiError or ServiceUnreachable.

        ``rewind`` is called before every attempt after the first, so a streamed
        body can start again. With ``auth=False`` the API key is not sent (downloads:
        the URL is signed, and may point at another host such as S3).
        """
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            headers["X-API-Key"] = self.api_key
        kwargs.setdefault("timeout", (min(10.0, self.timeout), self.timeout))
        waited = 0.0
        attempt = 1
        while True:
            try:
                response = self.session.request(method, url, headers=headers, **kwargs)
            except requests.ConnectionError as exc:
                delay = self.retry.backoff_delay(attempt)
                if not self._may_retry(attempt, waited, delay):
                    raise ServiceUnreachable(
                        f"cannot reach {self.base_url} after {attempt} attempt(s): "
                        f"{_reason(exc)}") from exc
            except requests.Timeout as exc:
                raise ServiceUnreachable(
                    f"{method} {url} got no answer within {self.timeout:g}s") from exc
            else:
                if response.status_code < 400:
                    return response
                given = retry_after(response)
                delay = self.retry.backoff_delay(attempt) if given is None else given
                if (response.status_code not in self.retry.statuses
                        or not self._may_retry(attempt, waited, delay)):
                    error = from_response(response)
                    response.close()
                    raise error
                response.close()
            self._sleep(delay)
            waited += delay
            attempt += 1
            if rewind is not None:
                rewind()

    def _may_retry(self, attempt: int, waited: float, delay: float) -> bool:
        return attempt < self.retry.max_attempts and waited + delay <= self.retry.max_wait

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


def _reason(exc: requests.ConnectionError) -> str:
    # requests nests the useful part ("Connection refused") several exceptions deep.
    text = str(exc)
    for marker in ("Errno", "Failed to resolve", "Connection refused", "RemoteDisconnected"):
        at = text.find(marker)
        if at >= 0:
            return text[at:].split("'))")[0].rstrip(")'\"")
    return text[:200]
