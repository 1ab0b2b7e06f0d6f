"""One streaming pass over an untrusted XML part, keeping only the elements asked for.

Parts are fed to expat in chunks, so no tree is ever built, and the pass stops at a byte cap.
Entity declarations and external entities are refused outright: office XML never needs them,
and they are how entity-expansion bombs and XXE work. Elements are asked for by
``(parent, name)`` in expat's ``"namespace-uri local-name"`` form, which is what the
standards define (a document may bind any prefix to a namespace).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from xml.parsers import expat

Key = tuple[str, str]  # (parent element, element); the root's parent is ""
CHUNK = 64 << 10
MAX_EVENTS = 100_000  # matching elements kept per pass (sheets, slides, relationships)
_MAX_TEXT = 4000


class _Refused(Exception):
    """The part declares entities, or broke a limit."""


class _Done(Exception):
    """Everything asked for has been seen; stop reading."""


@dataclass
class _Text:
    """The text of one wanted element, gathered up to _MAX_TEXT characters."""

    label: str
    depth: int
    parts: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, data: str) -> None:
        """Expat's character-data handler while inside the element."""
        if self.size < _MAX_TEXT:
            self.parts.append(data[:_MAX_TEXT - self.size])
            self.size += len(self.parts[-1])


@dataclass
class Scan:
    """What a pass collected."""

    texts: dict[str, str] = field(default_factory=dict)  # label -> first element's text
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # in document order
    complete: bool = False  # the whole part was read and parsed without error
    error: str = ""


def scan(chunks: Iterable[bytes], texts: Mapping[Key, str] | None = None,
         elements: Mapping[Key, str] | None = None, cap: int = 64 << 20,
         stop_after_root: bool = False) -> Scan:
    """Parse chunks once, collecting texts and element attributes; never raises.

    A text is kept only once its element has closed, so a part cut short by an error or
    the cap still yields the texts that came before. ``stop_after_root`` ends the pass at
    the root element's start tag (for parts whose root attributes are all that matter).
    """
    want_text = texts or {}
    want_element = elements or {}
    found = Scan()
    stack: list[str] = [""]
    parser = expat.ParserCreate(namespace_separator=" ")
    collecting: _Text | None = None  # while inside a wanted text element

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal collecting
        key = (stack[-1], name)
        stack.append(name)
        label = want_element.get(key)
        if label is not None:
            if len(found.events) >= MAX_EVENTS:
                raise _Refused(f"more than {MAX_EVENTS} matching elements")
            found.events.append((label, attrs))
        if stop_after_root:
            raise _Done
        label = want_text.get(key)
        if label is not None and label not in found.texts and collecting is None:
            collecting = _Text(label, len(stack))
            parser.CharacterDataHandler = collecting.add

    def end(_name: str) -> None:
        nonlocal collecting
        if collecting is not None and len(stack) == collecting.depth:
            found.texts[collecting.label] = "".join(collecting.parts)
            collecting = None
            # Text outside wanted elements is never looked at: no handler, no cost.
            parser.CharacterDataHandler = None
        stack.pop()

    def refuse(*_args: object) -> None:
        raise _Refused("entity declarations are not allowed")

    def refuse_external(*_args: object) -> int:
        raise _Refused("external entities are not allowed")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_external
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    read = 0
    try:
        for chunk in chunks:
            read += len(chunk)
            if read > cap:
                raise _Refused(f"the part is larger than {cap} bytes")
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
        found.complete = True
    except _Done:
        found.complete = True
    # Hostile parts fail in many ways (expat errors, inflate errors from the zip, limits);
    # each one only means this part's fields stay unknown.
    except Exception as exc:
        found.error = f"{exc.__class__.__name__}: {exc}"[:200]
    return found


def member_chunks(zf: zipfile.ZipFile, name: str, cap: int) -> Iterator[bytes]:
    """A zip member in chunks, stopping after cap bytes whatever its header declares."""
    info = zf.getinfo(name)
    if info.flag_bits & 1:
        raise ValueError(f"{name} is encrypted")
    read = 0
    with zf.open(info) as member:
        # One byte past the cap, so scan() sees the part is too long instead of cut short.
        while read <= cap and (chunk := member.read(min(CHUNK, cap + 1 - read))):
            read += len(chunk)
            yield chunk
