"""Client methods for connectors, exports and export defaults (mixed into Client)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from converter.client.errors import ExportFailed, WaitTimeout
from converter.client.mixin_base import ClientCalls, segment


class DestinationsMixin(ClientCalls):
    """Connectors (where files go) and exports (what goes there)."""





    # ------------------------------------------------------------------ connectors
    def create_connector(self, provider: str, *, name: str | None = None,
                         config: dict[str, Any] | None = None,
                         credentials: dict[str, str] | None = None,
                         idempotency_key: str | None = None) -> dict[str, Any]:
        """Store a connector (s3 or local); credentials come back only as set/last4."""
        body: dict[str, Any] = {"provider": provider, "config": config or {},
                                "credentials": credentials or {}}
        if name:
            body["name"] = name
        return self._creating("/v1/connectors", idempotency_key, json=body)

    def list_connectors(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every connector of the workspace, newest first."""
        return self._pages("/v1/connectors", {"limit": page_size})

    def get_connector(self, connector_id: str) -> dict[str, Any]:
        """One connector."""
        return self._json("GET", f"/v1/connectors/{segment(connector_id)}")

    def update_connector(self, connector_id: str, **changes: Any) -> dict[str, Any]:
        """PATCH name, config or credentials (None removes an optional field)."""
        return self._json("PATCH", f"/v1/connectors/{segment(connector_id)}", json=changes)

    def delete_connector(self, connector_id: str) -> None:
        """Remove a connector."""
        self.http.request("DELETE", f"/v1/connectors/{segment(connector_id)}")

    def test_connector(self, connector_id: str) -> dict[str, Any]:
        """Write and delete a probe; ConnectorFailed (400) carries the provider's reason."""
        return self._json("POST", f"/v1/connectors/{segment(connector_id)}/test")

    def browse(self, connector_id: str, path: str = "", *,
               page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every folder and file directly under path, page by page."""
        return self._pages(f"/v1/connectors/{segment(connector_id)}/browse",
                           {"path": path or None, "limit": page_size})

    # ------------------------------------------------------------------ exports
    def create_export(self, *, run_id: str | None = None, file_id: str | None = None,
                      run_ids: list[str] | None = None, format: str | None = None,
                      options: dict[str, Any] | None = None, bundle: str | None = None,
                      destination_connector_id: str | None = None,
                      destination_subpath: str | None = None, on_conflict: str | None = None,
                      idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue an export of a run, a file or several runs; returns the export (pending)."""
        fields = {"run_id": run_id, "file_id": file_id, "run_ids": run_ids, "format": format,
                  "options": options, "bundle": bundle,
                  "destination_connector_id": destination_connector_id,
                  "destination_subpath": destination_subpath, "on_conflict": on_conflict}
        body = {k: v for k, v in fields.items() if v is not None}
        return self._creating("/v1/exports", idempotency_key, json=body)

    def get_export(self, export_id: str) -> dict[str, Any]:
        """An export's status, download URL and delivery."""
        return self._json("GET", f"/v1/exports/{segment(export_id)}")

    def list_exports(self, *, status: str | None = None,
                     page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every visible export (optionally by status), newest first."""
        return self._pages("/v1/exports", {"status": status, "limit": page_size})

    def wait_export(self, export_id: str, *, timeout: float = 600.0,
                    interval: float = 0.25, max_interval: float = 5.0) -> dict[str, Any]:
        """Poll until completed (returned) or failed (ExportFailed); WaitTimeout after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            export = self.get_export(export_id)
            if export["status"] == "completed":
                return export
            if export["status"] == "failed":
                raise ExportFailed(export)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(export, timeout)
            time.sleep(min(interval, remaining))
            interval = min(max_interval, interval * 1.5)

    def get_export_defaults(self) -> dict[str, Any]:
        """The workspace's default export destination."""
        return self._json("GET", "/v1/export-defaults")

    def set_export_defaults(self, destination_connector_id: str | None,
                            destination_subpath: str = "",
                            on_conflict: str = "rename") -> dict[str, Any]:
        """Set (None: clear) the workspace's default destination."""
        return self._json("PUT", "/v1/export-defaults", json={
            "destination_connector_id": destination_connector_id,
            "destination_subpath": destination_subpath, "on_conflict": on_conflict})
