"""What crosses the socket between HTTP workers and the engine process: jobs and errors.

Both ends import this module, so the shapes are defined once. Errors travel as an
XML-RPC fault carrying the error's class name, message and details; the client
raises the same ConverterError subclass, so an engine in another process answers
exactly as the in-process pool would (422 for a broken document, 503 when full...).
"""

from __future__ import annotations

import json
import xmlrpc.client
from typing import Any

from converter import errors
from converter.engine.pool import EngineJob
from converter.engine.scheduler import Lane, Tenant

# Fault codes of the engine process; the bridge's own codes (1-10) stay inside it.
FAULT_CONVERTER_ERROR = 100
FAULT_INTERNAL = 101


def job_to_wire(job: EngineJob) -> dict[str, Any]:
    """An EngineJob as an XML-RPC struct (None becomes absent: XML-RPC has no null)."""
    wire: dict[str, Any] = {
        "import_filter": job.import_filter,
        "export_filter": job.export_filter,
        "filter_options": list(job.filter_options),
        "extras": dict(job.extras),
        "many_outputs": job.many_outputs,
        "source": job.source,
        "target": job.target,
        "workspace": job.tenant.workspace,
        "key_id": job.tenant.key_id,
        "lane": job.tenant.lane,
        "cost": float(job.cost),
    }
    if job.password is not None:
        wire["password"] = job.password
    return wire


def job_from_wire(wire: dict[str, Any]) -> EngineJob:
    """The EngineJob a worker sent; unknown keys are ignored (newer workers, older engine)."""
    lane: Lane = "async" if wire.get("lane") == "async" else "sync"
    return EngineJob(
        import_filter=str(wire.get("import_filter", "")),
        export_filter=str(wire.get("export_filter", "")),
        filter_options=[str(o) for o in wire.get("filter_options", [])],
        password=wire.get("password"),
        extras=dict(wire.get("extras", {})),
        many_outputs=bool(wire.get("many_outputs", False)),
        source=str(wire.get("source", "")),
        target=str(wire.get("target", "")),
        tenant=Tenant(str(wire.get("workspace", "")), str(wire.get("key_id", "")), lane),
        cost=float(wire.get("cost", 1.0)),
    )


def error_to_fault(exc: errors.ConverterError) -> xmlrpc.client.Fault:
    """A service error as a fault the client turns back into the same error."""
    body = {"class": type(exc).__name__, "message": exc.message, "details": exc.details}
    return xmlrpc.client.Fault(FAULT_CONVERTER_ERROR, json.dumps(body, default=str))


def fault_to_error(fault: xmlrpc.client.Fault) -> errors.ConverterError:
    """The ConverterError a fault carries; anything else is the engine's failure (502)."""
    if fault.faultCode == FAULT_CONVERTER_ERROR:
        try:
            body = json.loads(fault.faultString)
            cls = getattr(errors, str(body["class"]), None)
            if isinstance(cls, type) and issubclass(cls, errors.ConverterError):
                error: errors.ConverterError = cls.__new__(cls)
                # The details are the constructor's keyword arguments already applied:
                # rebuilding through the base keeps every subclass's public body as sent.
                errors.ConverterError.__init__(error, str(body["message"]),
                                               **dict(body.get("details", {})))
                if "retry_after" in error.details:
                    error.headers["Retry-After"] = str(error.details["retry_after"])
                return error
        except (ValueError, KeyError, TypeError):
            pass
    return errors.UpstreamError(f"The engine process failed: {fault.faultString}")
