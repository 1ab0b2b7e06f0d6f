"""What the Client's mixins (automations, destinations) call on the Client, declared once.

The Client (converter.client.api) defines these for real; the declarations here let the
mixins be type-checked on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote


def segment(value: str) -> str:
    """An id as one path segment: an id with '/' or '?' must not reach another route."""
    return quote(value, safe="")


class ClientCalls:
    """The Client's request helpers, as its mixins see them."""

    http: Any

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("defined by converter.client.api.Client")

    def _json_none(self, method: str, path: str) -> None:
        raise NotImplementedError("defined by converter.client.api.Client")

    def _creating(self, path: str, key: str | None, **kwargs: Any) -> dict[str, Any]:
        raise NotImplementedError("defined by converter.client.api.Client")

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        raise NotImplementedError("defined by converter.client.api.Client")
