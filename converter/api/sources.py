"""Where a request's document comes from: a multipart ``file`` or a ``url`` to fetch."""

from __future__ import annotations

from typing import IO

from flask import request

from converter.api.context import form_value
from converter.errors import InvalidRequest


def document_source() -> tuple[IO[bytes] | None, str | None, str | None]:
    """(stream, filename, url): exactly one of the upload and the URL is set."""
    upload = request.files.get("file")
    url = form_value("url")
    if upload is not None and url:
        raise InvalidRequest("send either file or url, not both", field="url")
    if upload is not None:
        return upload.stream, upload.filename, None
    if url:
        return None, None, url
    raise InvalidRequest("file is required: send the document as multipart/form-data field "
                         "'file', or give its address in 'url'", field="file")
