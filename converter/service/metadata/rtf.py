r"""Title and author of an RTF document, from its {\info ...} group.

Only the head of the file is read (the info group sits after the font, colour and style
tables, before the text). Page counts are not stored in RTF, so they stay unknown.
"""

from __future__ import annotations

import re
from pathlib import Path

from converter.service.metadata.found import Found, clean

HEAD_CAP = 4 << 20
# One RTF token: a control word with its optional numeric parameter (and the one space
# that ends it), a hex byte, a control symbol, a brace, or a run of plain text.
_TOKEN = re.compile(rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])"
                    rb"|([^\\{}\r\n]+)|[\r\n]+", re.DOTALL)
_CHARSETS = {b"mac": "mac_roman", b"pc": "cp437", b"pca": "cp850"}
_FIELDS = {b"title": "title", b"author": "author"}


def read_rtf(path: Path) -> Found:
    """Title and author; both unknown if the file is not RTF or its info group is cut."""
    with path.open("rb") as fh:
        head = fh.read(HEAD_CAP + 1)
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{\\rtf"):
        return Found()
    encoding = _encoding(head[:4096])
    start = _info_group(head)
    if start < 0:
        # Only a file read to its end is known to have no info group.
        return Found(title=None, author=None) if len(head) <= HEAD_CAP else Found()
    texts = _group_texts(head, start, encoding)
    if texts is None:
        return Found()
    return Found(title=clean(texts.get("title")), author=clean(texts.get("author")))


def _encoding(header: bytes) -> str:
    page = re.search(rb"\\ansicpg(\d{1,5})", header)
    if page:
        name = "utf-8" if page.group(1) == b"65001" else f"cp{int(page.group(1))}"
        try:
            "".encode(name)
            return name
        except LookupError:
            pass
    charset = re.match(rb"\{\\rtf1?\\(mac|pca|pc)\b", header.lstrip())
    return _CHARSETS.get(charset.group(1), "cp1252") if charset else "cp1252"


def _info_group(data: bytes) -> int:
    r"""Offset of the "{\info" that opens a group, not an escaped "\{\info" in text."""
    for match in re.finditer(rb"\{\\info\b", data):
        before = data[max(0, match.start() - 64):match.start()]
        # An odd run of backslashes before it makes "{" a literal brace in the text.
        if (len(before) - len(before.rstrip(b"\\"))) % 2 == 0:
            return match.start()
    return -1


def _group_texts(data: bytes, start: int, encoding: str) -> dict[str, str] | None:
    """Texts of the title and author groups inside the group at start; None if unclosed."""
    texts: dict[str, list[str]] = {}
    depth = 0
    target: tuple[str, int] | None = None  # (field, depth of its group) while inside one
    pending = bytearray()  # \'hh bytes and plain text, decoded together (DBCS pairs)
    skip = 0  # characters still to drop after a \uN (its ANSI fallback)
    skip_per_unicode = 1

    def flush() -> None:
        if target is not None and pending:
            texts.setdefault(target[0], []).append(pending.decode(encoding, "replace"))
        pending.clear()

    for match in _TOKEN.finditer(data, start):
        word, number, hex_byte, symbol, brace, plain = match.groups()
        if brace == b"{":
            depth += 1
        elif brace == b"}":
            if target is not None and depth == target[1]:
                flush()
                target = None
            depth -= 1
            if depth == 0:
                # \uN gives UTF-16 units: join surrogate pairs, replace lone halves.
                return {name: "".join(parts).encode("utf-16-le", "surrogatepass")
                        .decode("utf-16-le", "replace") for name, parts in texts.items()}
        elif word is not None:
            if word in _FIELDS and target is None and depth == 2:
                target = (_FIELDS[word], depth)
            elif word == b"uc" and number:
                skip_per_unicode = min(int(number), 8)
            elif word == b"u" and number and target is not None:
                flush()
                texts.setdefault(target[0], []).append(chr(int(number) % 0x10000))
                skip = skip_per_unicode
        elif target is None:
            continue
        elif hex_byte is not None:
            if skip:
                skip -= 1
            else:
                pending.append(int(hex_byte, 16))
        elif symbol is not None:
            if symbol in b"\\{}":
                pending.extend(symbol)
            elif symbol == b"~":
                pending.extend(b" ")
        elif plain is not None:
            dropped = min(skip, len(plain))
            skip -= dropped
            pending.extend(plain[dropped:])
    return None
