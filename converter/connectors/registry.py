"""Providers by name: which fields each takes, their validation, and building one.

A connector is stored as (provider, config, credentials): config holds the
fields that may be shown (bucket, prefix, path...), credentials the ones that
are only ever stored encrypted and shown as "set, last 4". Adding a provider
means one ProviderSpec here and one module implementing ``base.Provider``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from converter.connectors.base import Provider
from converter.connectors.local import LocalProvider, check_root
from converter.connectors.paths import normalize_subpath
from converter.errors import InvalidRequest

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


@dataclass(frozen=True)
class Settings:
    """What the operator decides about connectors."""

    local_roots: tuple[str, ...] = ()
    # Why an endpoint address is refused (the webhook policy), None when allowed.
    denial: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class ProviderSpec:
    """The fields one provider takes."""

    config: tuple[str, ...]
    required: tuple[str, ...]
    credentials: tuple[str, ...]


PROVIDERS: dict[str, ProviderSpec] = {
    "s3": ProviderSpec(config=("bucket", "prefix", "region", "endpoint_url"),
                       required=("bucket",),
                       credentials=("access_key_id", "secret_access_key")),
    "local": ProviderSpec(config=("path",), required=("path",), credentials=()),
}


def spec(provider: Any) -> ProviderSpec:
    """The spec of a provider name; InvalidRequest listing the valid ones."""
    if not isinstance(provider, str) or provider not in PROVIDERS:
        raise InvalidRequest(f"provider must be one of {', '.join(PROVIDERS)}",
                             field="provider", valid_values=list(PROVIDERS))
    return PROVIDERS[provider]


def _string(value: Any, field: str, limit: int = 1024) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidRequest(f"{field} must be a string of at most {limit} characters",
                             field=field)
    return value.strip()


def validate(provider: str, config: dict[str, Any], credentials: dict[str, Any],
             settings: Settings) -> tuple[dict[str, Any], dict[str, str]]:
    """Checked, normalised (config, credentials); InvalidRequest naming the bad field."""
    shape = spec(provider)
    for where, given, allowed in (("config", config, shape.config),
                                  ("credentials", credentials, shape.credentials)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            valid = ", ".join(allowed) or "none"
            raise InvalidRequest(f"{where}.{unknown[0]} is not a field of {provider} "
                                 f"connectors; valid {where} fields: {valid}",
                                 field=f"{where}.{unknown[0]}", valid_values=list(allowed))
    clean: dict[str, Any] = {}
    for name in shape.config:
        value = config.get(name)
        if value is None or value == "":
            if name in shape.required:
                raise InvalidRequest(f"config.{name} is required for {provider} connectors",
                                     field=f"config.{name}")
            continue
        clean[name] = _string(value, f"config.{name}")
    secrets = {name: _string(credentials[name], f"credentials.{name}", 4096)
               for name in shape.credentials if credentials.get(name)}
    if provider == "s3":
        _check_s3(clean, secrets, settings)
    else:
        clean["path"] = str(_local_root(clean["path"], settings))
    return clean, secrets


def _local_root(path: str, settings: Settings) -> str:
    try:
        return str(check_root(path, settings.local_roots))
    except InvalidRequest as exc:
        exc.details["field"] = "config.path"
        raise


def _check_s3(config: dict[str, Any], secrets: dict[str, str], settings: Settings) -> None:
    if not _BUCKET.match(config["bucket"]):
        raise InvalidRequest("config.bucket must be an S3 bucket name: 3 to 63 lower-case "
                             "letters, digits, dots and hyphens", field="config.bucket")
    if "prefix" in config:
        config["prefix"] = normalize_subpath(config["prefix"], "config.prefix")
    if "region" in config and not _REGION.match(config["region"]):
        raise InvalidRequest("config.region must be an AWS region such as eu-west-1",
                             field="config.region")
    if "endpoint_url" in config:
        config["endpoint_url"] = _endpoint(config["endpoint_url"], settings)
    if len(secrets) == 1:
        missing = ({"access_key_id", "secret_access_key"} - set(secrets)).pop()
        raise InvalidRequest(f"credentials.{missing} is required with the other key: give "
                             "both access_key_id and secret_access_key, or neither to use "
                             "the service's AWS role", field=f"credentials.{missing}")


def _endpoint(url: str, settings: Settings) -> str:
    """An http(s) endpoint whose host the address policy allows (no probing inside)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("config.endpoint_url must be an http:// or https:// URL",
                             field="config.endpoint_url")
    if settings.denial is not None:
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443,
                                       type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise InvalidRequest(f"config.endpoint_url: host {parts.hostname!r} does not "
                                 "resolve", field="config.endpoint_url") from None
        for info in infos:
            reason = settings.denial(str(info[4][0]))
            if reason:
                raise InvalidRequest(
                    f"config.endpoint_url: {parts.hostname} is a {reason} address, which "
                    "connectors may not use unless the operator lists it in "
                    "CONVERTER_WEBHOOK_ALLOW", field="config.endpoint_url")
    return url.rstrip("/")


def open_provider(provider: str, config: dict[str, Any], credentials: dict[str, str],
                  settings: Settings) -> Provider:
    """A live provider for a stored connector."""
    if provider == "s3":
        from converter.connectors.s3 import S3Provider

        return S3Provider(bucket=config["bucket"], prefix=config.get("prefix", ""),
                          region=config.get("region"), endpoint_url=config.get("endpoint_url"),
                          access_key_id=credentials.get("access_key_id"),
                          secret_access_key=credentials.get("secret_access_key"))
    if provider == "local":
        return LocalProvider(config["path"], settings.local_roots)
    spec(provider)
    raise AssertionError("unreachable")  # pragma: no cover - spec() raised
