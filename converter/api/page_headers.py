"""Headers for what the app serves to browsers (the page at / and /docs)."""

from __future__ import annotations

from flask import Response


def harden(response: Response, csp: str) -> Response:
    """Same-origin CSP, no sniffing, no referrer, and revalidation by ETag.

    no-cache (not no-store) so a browser never runs an old script against a newer API
    after an upgrade, yet still revalidates cheaply.
    """
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response
