"""/openapi.json: a valid OpenAPI 3.1 description of every route, with the matrix's facts.

Its responses are checked against the running service by schemathesis
(tests/test_openapi_schemathesis.py); these tests check the description itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from converter import config as config_module
from converter.app import create_app
from tests.support.served import ServedApp, error_of

# Methods Flask answers on every route by itself.
_AUTOMATIC = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def spec(service: ServedApp) -> dict[str, Any]:
    """The served description (no key needed to read it)."""
    response = service.http.get(f"{service.url}/openapi.json", headers={"X-API-Key": ""},
                                timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The real app factory's Flask app, for its URL map (no engine started)."""
    flask_app = create_app(config_module.load({"CONVERTER_DATA_DIR": str(tmp_path)}),
                           start_engine=False)
    yield flask_app
    flask_app.extensions["converter"].close()


def test_it_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    """openapi-spec-validator accepts it as OpenAPI 3.1, $refs resolved."""
    assert spec["openapi"].startswith("3.1.")
    validate(spec)


def test_every_route_and_method_is_described(app: Flask, spec: dict[str, Any]) -> None:
    """Flask's URL map and the description's paths are the same set of operations."""
    routed = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        # The page's static files are routed as /web/<path:filename>; described as {asset}.
        path = path.replace("{filename}", "{asset}")
        routed |= {(method.lower(), path) for method in rule.methods or () if
                   method not in _AUTOMATIC}
    # /docs/init.js is part of the Swagger UI page itself, described as that page.
    routed.discard(("get", "/docs/init.js"))
    described = {(method, path) for path, item in spec["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    assert routed == described


def test_every_operation_documents_its_errors(spec: dict[str, Any]) -> None:
    """Each keyed operation answers 401 and 429 in the error envelope; each has an id."""
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header",
                                 "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["operationId"], (method, path)
            keyed = operation.get("security", spec["security"]) != []
            if keyed:
                for status in ("401", "429"):
                    ref = operation["responses"][status]["$ref"]
                    response = spec["components"]["responses"][ref.rsplit("/", 1)[1]]
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["type", "message", "request_id"]
    for detail in ("field", "valid_values", "valid_targets", "retryable", "retry_after"):
        assert detail in error["properties"]


def test_formats_come_from_the_matrix(service: ServedApp, spec: dict[str, Any]) -> None:
    """The enums of source and target formats are what GET /v1/formats serves."""
    sources = service.request("GET", "/v1/formats").json()["sources"]
    schemas = spec["components"]["schemas"]
    assert schemas["SourceFormat"]["enum"] == list(sources)
    targets = {t for source in sources.values() for t in source["targets"]}
    assert set(schemas["TargetFormat"]["enum"]) == targets
    media = {t["media_type"].split(";")[0] for s in sources.values()
             for t in s["targets"].values()}
    converted = spec["components"]["responses"]["Converted"]["content"]
    assert set(converted) == media | {"application/zip"}


def test_option_schemas_come_from_the_matrix(service: ServedApp,
                                             spec: dict[str, Any]) -> None:
    """Every option's type, range, choices and default are the ones GET /v1/formats lists."""
    sources = service.request("GET", "/v1/formats").json()["sources"]
    declared: dict[str, dict[str, Any]] = {}
    for source in sources.values():
        for target in source["targets"].values():
            declared.update(target["options"])
    options = spec["components"]["schemas"]["ConversionOptions"]
    assert options["additionalProperties"] is False
    assert set(options["properties"]) == set(declared)
    json_types = {"bool": "boolean", "int": "integer", "page_range": "string",
                  "pages": "string", "secret": "string"}
    for name, described in declared.items():
        schema = options["properties"][name]
        assert schema["description"] == described["help"], name
        assert schema.get("default") == described.get("default"), name
        assert schema.get("enum") == described.get("choices"), name
        for bound in ("minimum", "maximum"):
            assert schema.get(bound) == described.get(bound), (name, bound)
        if described["type"] in json_types and "choices" not in described:
            assert schema["type"] == json_types[described["type"]], name
    assert options["properties"]["quality"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 90,
        "description": declared["quality"]["help"]}


def test_options_in_the_description_are_what_the_service_accepts(
        service: ServedApp, spec: dict[str, Any], corpus: Path) -> None:
    """A value at the described maximum converts; one past it is refused naming the option."""
    maximum = spec["components"]["schemas"]["ConversionOptions"]["properties"]["dpi"]["maximum"]
    file_id = service.upload_ok(corpus / "docx" / "SampleDoc.docx")["id"]
    ok = service.convert(file_id, "png", dpi=str(maximum))
    assert ok.status_code == 200, ok.text
    refused = service.convert(file_id, "png", dpi=str(maximum + 1))
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "options.dpi"


def test_method_not_allowed_names_the_allowed_methods(service: ServedApp) -> None:
    """405 is in the described error envelope and carries Allow (RFC 9110; schemathesis)."""
    response = service.request("TRACE", "/healthz")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {
        "GET", "HEAD", "OPTIONS"}
    assert error_of(response)["type"] == "method_not_allowed"
