"""Client methods for automations (watched folders), mixed into ``Client``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from converter.client.mixin_base import ClientCalls, segment


class AutomationsMixin(ClientCalls):
    """POST/GET/PATCH/DELETE /v1/automations and the automation's events."""



    def create_automation(self, source_connector_id: str, formats: list[str],
                          destination_connector_id: str, *, source_path: str = "",
                          destination_subpath: str = "",
                          options: dict[str, Any] | None = None, enabled: bool = True,
                          after: str = "keep", idempotency_key: str | None = None,
                          ) -> dict[str, Any]:
        """Watch source_path of a connector; each new or changed file is delivered converted."""
        body = {"source_connector_id": source_connector_id, "source_path": source_path,
                "formats": formats, "options": options or {},
                "destination_connector_id": destination_connector_id,
                "destination_subpath": destination_subpath, "enabled": enabled,
                "after": after}
        return self._creating("/v1/automations", idempotency_key, json=body)

    def get_automation(self, automation_id: str) -> dict[str, Any]:
        """One automation."""
        return self._json("GET", f"/v1/automations/{segment(automation_id)}")

    def list_automations(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every automation of the workspace, newest first, page by page."""
        return self._pages("/v1/automations", {"limit": page_size})

    def update_automation(self, automation_id: str, **changes: Any) -> dict[str, Any]:
        """Change some fields (enabled=False pauses it); returns the automation."""
        return self._json("PATCH", f"/v1/automations/{segment(automation_id)}", json=changes)

    def delete_automation(self, automation_id: str) -> None:
        """Remove an automation and its history (delivered files stay)."""
        self._json_none("DELETE", f"/v1/automations/{segment(automation_id)}")

    def automation_events(self, automation_id: str, *, kind: str | None = None,
                          page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """The automation's history, newest first: seen, converted, delivered, failed."""
        return self._pages(f"/v1/automations/{segment(automation_id)}/events",
                           {"kind": kind, "limit": page_size})


