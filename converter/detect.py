"""Decide an upload's real format from its content before LibreOffice ever opens it.

Only headers are read: zip central directories, OLE2/CFB directory sectors and a few bytes of
the streams that carry encryption flags. Nothing here trusts the file name, and malformed input
yields a ``Detection`` with a reason instead of an exception.
"""

from __future__ import annotations

import codecs
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
HEAD_BYTES = 8192
# Caps that keep hostile input cheap: bytes read from a zip member, CFB sectors walked.
MEMBER_CAP = 1 << 20
MAX_DIR_BYTES = 256 << 10
MAX_CHAIN = 4096

# Extension -> format it promises. OLE2 formats have no aliases: .dot/.xlt/.pot are unknown.
EXTENSIONS: dict[str, str] = {
    **dict.fromkeys(("docx", "docm", "dotx", "dotm"), "docx"),
    **dict.fromkeys(("xlsx", "xlsm", "xltx", "xltm"), "xlsx"),
    **dict.fromkeys(("pptx", "pptm", "potx", "potm", "ppsx", "ppsm"), "pptx"),
    **dict.fromkeys(("odt", "ott"), "odt"),
    **dict.fromkeys(("ods", "ots"), "ods"),
    **dict.fromkeys(("odp", "otp"), "odp"),
    "doc": "doc", "xls": "xls", "ppt": "ppt", "rtf": "rtf",
    "fodt": "fodt", "fods": "fods", "fodp": "fodp",
}
# Flat (single XML file) OpenDocument: the root element names its type.
FLAT_ODF = re.compile(
    rb"<office:document\b[^>]*?office:mimetype=[\"']application/vnd\.oasis\.opendocument\."
    rb"(text|spreadsheet|presentation)[\"']", re.DOTALL)
FLAT_ODF_FORMATS = {b"text": "fodt", b"spreadsheet": "fods", b"presentation": "fodp"}
ODF_MIMETYPES = {
    f"application/vnd.oasis.opendocument.{kind}{suffix}": fmt
    for kind, fmt in (("text", "odt"), ("spreadsheet", "ods"), ("presentation", "odp"))
    for suffix in ("", "-template")
}
OOXML_MAIN_PARTS = {"word/document.xml": "docx", "xl/workbook.xml": "xlsx",
                    "ppt/presentation.xml": "pptx"}
# Content-type words of an OOXML main part, for packages that rename it (found via _rels/.rels).
OOXML_KINDS = {"wordprocessingml": "docx", "ms-word": "docx", "spreadsheetml": "xlsx",
               "ms-excel": "xlsx", "presentationml": "pptx", "ms-powerpoint": "pptx"}
NO_OFFICE_PARTS = ("zip archive without word/document.xml, xl/workbook.xml, ppt/presentation.xml"
                   " or an ODF mimetype")
OOXML_TABLE = re.compile(rb"<(/?)w:tbl[\s>]")
ODF_TABLE = re.compile(rb"<(/?)table:table[\s>]")
TABLE_SCAN_CAP = 256 << 20  # bytes of a main part scanned for table nesting
END_OF_CHAIN = 0xFFFFFFFA  # sector numbers above this are markers, not sectors


@dataclass(frozen=True)
class Detection:
    """What the bytes of an upload really are."""

    format: str | None
    container: str
    encrypted: bool
    uncompressed_size: int
    reason: str = ""
    # Deepest nesting of tables in the main text part (docx, odt): LibreOffice's layout
    # time grows steeply with it, so absurd depths are refused before conversion.
    table_depth: int = 0


def detect(path: Path, filename: str | None = None) -> Detection:
    """Detect the source format of the file at ``path`` from its content.

    ``filename`` (default ``path.name``) is consulted only for encrypted OOXML, whose real type
    is hidden inside the encrypted package. Raises OSError only if the file cannot be read.
    """
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        size = fh.seek(0, 2)
        if not head:
            return Detection(None, "empty", False, 0, "empty file")
        if head.startswith(OLE2_MAGIC):
            return _detect_ole2(fh, size, filename if filename is not None else path.name)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            found = _detect_zip(fh, starts_at_zero=True)
            if isinstance(found, Detection):
                return found
            return Detection(None, "zip", False, size, f"truncated or corrupt zip archive: {found}")
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f")
        if text.startswith(b"{\\rtf"):
            return Detection("rtf", "rtf", False, size)
        if text.startswith((b"<?xml", b"<office:document")):
            flat = FLAT_ODF.search(head)
            if flat:
                return Detection(FLAT_ODF_FORMATS[flat.group(1)], "xml", False, size)
        # Readers accept junk before the header, so look where they look: the first KiB.
        if b"%PDF-" in head[:1024]:
            return Detection(None, "pdf", False, size, "PDF is not a supported source format")
        # A zip may carry a prefix (self-extractors); zipfile finds it from the end record.
        if zipfile.is_zipfile(fh):
            found = _detect_zip(fh, starts_at_zero=False)
            if isinstance(found, Detection):
                return found
    if _is_utf8_text(head, complete=size <= len(head)):
        return Detection(None, "text", False, size, "plain text, not an office document")
    return Detection(None, "unknown", False, size, "unrecognised binary content")


def check_extension(detection: Detection, filename: str) -> str | None:
    """Return a human message if the filename's extension contradicts the detected content."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    ext = base.rsplit(".", 1)[-1].lower() if "." in base else ""
    promised = EXTENSIONS.get(ext)
    if promised is None:
        return None
    if detection.format is None:
        article = "an" if ext[0] in "aefhilmnorsx" else "a"
        return f"file named .{ext} is not {article} {ext} document ({detection.reason})"
    if detection.format != promised:
        return f"content is {detection.format} but the file is named .{ext}"
    return None


def _is_utf8_text(head: bytes, complete: bool) -> bool:
    try:
        # Not final unless the whole file is here: the 8 KiB cut may split a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def _detect_zip(fh: BinaryIO, starts_at_zero: bool) -> Detection | str:
    """Classify a zip by member names, or say why zipfile could not read it."""
    try:
        with zipfile.ZipFile(fh) as zf:
            # zipfile tolerates data before an archive, so in a truncated package it happily
            # reads the end record of a stored embedded xlsx as if it were the whole file.
            if starts_at_zero and min((i.header_offset for i in zf.infolist()), default=0):
                return "the only central directory belongs to an embedded archive"
            return _classify_zip(zf)
    # zipfile raises a zoo of types on hostile archives (BadZipFile, ValueError, zlib.error,
    # struct.error, RuntimeError for encrypted members, ...); all of them mean "corrupt".
    except Exception as exc:
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
            return "no central directory"
        return _printable(str(exc))


def _classify_zip(zf: zipfile.ZipFile) -> Detection:
    infos = zf.infolist()
    total = sum(info.file_size for info in infos)
    members = {info.filename.lower(): info for info in infos}
    # Office suites never use zip's own encryption, and LibreOffice cannot open it.
    encrypted = any(info.flag_bits & 1 for info in infos)
    reason = "zip members are password-encrypted" if encrypted else ""

    media_type = _read_member(zf, members.get("mimetype"), 256).strip().decode("ascii", "replace")
    manifest = _read_member(zf, members.get("meta-inf/manifest.xml"), MEMBER_CAP)
    if not media_type:
        # ODF may omit the mimetype member; the manifest's root entry names the type too.
        roots = [e for e in _tags(manifest, "file-entry") if e.get("full-path") == "/"]
        media_type = roots[0].get("media-type", "")[:100] if roots else ""
    if media_type.startswith("application/vnd.oasis.opendocument."):
        fmt = ODF_MIMETYPES.get(media_type)
        # Only text documents lay out nested tables; spreadsheets are tables themselves.
        depth = _table_depth(zf, members.get("content.xml"), ODF_TABLE) if fmt == "odt" else 0
        if re.search(rb"<(?:[\w.-]+:)?encryption-data[\s/>]", manifest):
            encrypted, reason = True, "password-protected OpenDocument (manifest encryption-data)"
        if fmt is None:
            reason = f"OpenDocument type {_printable(media_type)} is not a supported source"
        return Detection(fmt, "zip", encrypted, total, reason, depth)
    if "[content_types].xml" in members:
        for part, fmt in OOXML_MAIN_PARTS.items():
            if part in members:
                depth = (_table_depth(zf, members[part], OOXML_TABLE)
                         if fmt == "docx" else 0)
                return Detection(fmt, "zip", encrypted, total, reason, depth)
        found, why = _ooxml_from_rels(zf, members)
        return Detection(found, "zip", encrypted, total, why or reason)
    if media_type:
        why = f"zip archive with mimetype {_printable(media_type)}"
        return Detection(None, "zip", encrypted, total, why)
    return Detection(None, "zip", encrypted, total, NO_OFFICE_PARTS)


def _ooxml_from_rels(
    zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
) -> tuple[str | None, str]:
    """Classify a package whose main part is not at its usual name, via _rels/.rels."""
    rels = _tags(_read_member(zf, members.get("_rels/.rels"), MEMBER_CAP), "Relationship")
    targets = [r.get("Target", "") for r in rels if r.get("Type", "").endswith("/officeDocument")]
    target = targets[0].lstrip("/").lower() if targets else ""
    if target not in members:
        return None, NO_OFFICE_PARTS + " (and _rels/.rels names no main part present)"
    overrides = _tags(_read_member(zf, members["[content_types].xml"], MEMBER_CAP), "Override")
    kinds = [o.get("ContentType", "") for o in overrides
             if o.get("PartName", "").lstrip("/").lower() == target]
    kind = kinds[0].lower() if kinds else ""
    if ".binary." in kind:
        return None, "binary OOXML workbook (xlsb) is not a supported source"
    for word, fmt in OOXML_KINDS.items():
        if word in kind:
            return fmt, f"main part is {_printable(target)}"
    return None, f"main part {_printable(target)} has unknown content type {_printable(kind)!r}"


def _tags(xml: bytes, name: str) -> list[dict[str, str]]:
    """Attributes of each <name> element; a regex, so entities and DTDs are never expanded."""
    text = xml.decode("utf-8", "replace")
    # Attribute names are keyed without their prefix: "manifest:full-path" -> "full-path".
    return [dict(re.findall(r"""([\w.-]+)\s*=\s*["']([^"']*)["']""", tag))
            for tag in re.findall(rf"<(?:\w+:)?{name}\b[^>]*>", text)]


def _table_depth(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None,
                 pattern: re.Pattern[bytes]) -> int:
    """Deepest table nesting in a member, streamed in chunks (never parsed as XML)."""
    if info is None or info.flag_bits & 1:
        return 0
    depth = deepest = 0
    tail = b""
    read = 0
    try:
        with zf.open(info) as member:
            while read < TABLE_SCAN_CAP and (chunk := member.read(1 << 20)):
                read += len(chunk)
                data = tail + chunk
                # Keep a short tail so a tag split across two chunks is seen once.
                cut = max(len(tail), len(data) - 32)
                for match in pattern.finditer(data, 0, cut):
                    depth = depth - 1 if match.group(1) else depth + 1
                    deepest = max(deepest, depth)
                tail = data[cut:]
            for match in pattern.finditer(tail):
                depth = depth - 1 if match.group(1) else depth + 1
                deepest = max(deepest, depth)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError):
        return deepest  # a corrupt member is LibreOffice's to reject, not ours to measure
    return deepest


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo | None, cap: int) -> bytes:
    if info is None or info.flag_bits & 1:
        return b""
    # read(cap) stops inflating after cap bytes, whatever size the header declares.
    with zf.open(info) as member:
        return member.read(cap)


def _printable(value: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in value[:80])


class _Entry(NamedTuple):
    name: str
    kind: int  # 1 storage, 2 stream, 5 root
    left: int
    right: int
    child: int
    start: int
    size: int


class _Cfb:
    """Just enough of [MS-CFB] to list the root's children and read the start of a stream."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        fh.seek(0)
        header = fh.read(512).ljust(512, b"\0")
        byte_order, shift, mini_shift = struct.unpack_from("<HHH", header, 28)
        if byte_order != 0xFFFE or shift not in (9, 12) or mini_shift != 6:
            raise ValueError("invalid header: byte order or sector sizes")
        first_dir, self.cutoff, self.first_minifat, _, self.next_difat, self.difat_left = (
            struct.unpack_from("<I4x5I", header, 48))
        self.fh, self.size, self.shift, self.ssize = fh, size, shift, 1 << shift
        self.difat: list[int] = list(struct.unpack_from("<109I", header, 76))
        self.fat_cache: dict[int, bytes] = {}
        self.chains: dict[int, list[int]] = {}
        self.entries = self._directory(first_dir)
        if not self.entries or self.entries[0].kind != 5:
            raise ValueError("directory does not start with a root entry")

    def _sector(self, sector: int) -> bytes:
        if sector > END_OF_CHAIN or (sector + 1) << self.shift >= self.size:
            raise ValueError(f"sector {sector} lies outside the file")
        self.fh.seek((sector + 1) << self.shift)
        return self.fh.read(self.ssize).ljust(self.ssize, b"\xff")

    def _next(self, sector: int) -> int:
        # Checked first so a wild sector number cannot send the DIFAT walk far past the file.
        if (sector + 1) << self.shift >= self.size:
            raise ValueError(f"sector {sector} lies outside the file")
        per = self.ssize // 4
        # The first 109 FAT sectors are listed in the header, the rest in a DIFAT chain.
        while sector // per >= len(self.difat) and self.difat_left > 0:
            data = self._sector(self.next_difat)
            self.difat += struct.unpack_from(f"<{per - 1}I", data)
            self.next_difat = struct.unpack_from("<I", data, self.ssize - 4)[0]
            self.difat_left -= 1
        if sector // per >= len(self.difat):
            raise ValueError("FAT sector beyond the DIFAT")
        fat_sector = self.difat[sector // per]
        if fat_sector not in self.fat_cache:
            self.fat_cache[fat_sector] = self._sector(fat_sector)
        value: int = struct.unpack_from("<I", self.fat_cache[fat_sector], sector % per * 4)[0]
        return value

    def _chain(self, start: int, length: int) -> list[int]:
        """First ``length`` sectors of the chain at ``start``; shorter if it ends or loops."""
        chain = self.chains.setdefault(start, [start] if start <= END_OF_CHAIN else [])
        while 0 < len(chain) < min(length, MAX_CHAIN):
            following = self._next(chain[-1])
            # Only short cycles are caught here; MAX_CHAIN bounds the long ones.
            if following > END_OF_CHAIN or following in chain[-64:]:
                break
            chain.append(following)
        return chain[:length]

    def _directory(self, first: int) -> list[_Entry]:
        entries = []
        for sector in self._chain(first, MAX_DIR_BYTES >> self.shift):
            data = self._sector(sector)
            for pos in range(0, self.ssize, 128):
                name_len, kind, left, right, child = struct.unpack_from("<HB1x3I", data, pos + 64)
                start, size = struct.unpack_from("<IQ", data, pos + 116)
                if self.shift == 9:
                    size &= 0xFFFFFFFF  # version 3 readers must ignore the high half
                name = data[pos : pos + min(max(name_len - 2, 0), 62)]
                entries.append(_Entry(name.decode("utf-16-le", "replace"), kind, left, right,
                                      child, start, size))
        return entries

    def root_children(self) -> dict[str, _Entry]:
        """Entries directly under the root, by lower-cased name (CFB names ignore case)."""
        found: dict[str, _Entry] = {}
        stack, seen = [self.entries[0].child], set()
        while stack:
            index = stack.pop()
            if index < len(self.entries) and index not in seen:
                seen.add(index)
                entry = self.entries[index]
                found[entry.name.lower()] = entry
                stack += (entry.left, entry.right)
        return found

    def read(self, entry: _Entry, limit: int) -> bytes:
        """Up to ``limit`` bytes from the start of a stream."""
        want = min(limit, entry.size)
        if entry.size >= self.cutoff:
            chain = self._chain(entry.start, -(-want // self.ssize))
            return b"".join(self._sector(s) for s in chain)[:want]
        # Small streams live in 64-byte mini sectors inside the root entry's own stream.
        per_sector, per_fat = self.ssize // 64, self.ssize // 4
        parts, mini = [], entry.start
        for _ in range(-(-want // 64)):
            if mini > END_OF_CHAIN:
                break
            host = self._chain(self.entries[0].start, mini // per_sector + 1)
            table = self._chain(self.first_minifat, mini // per_fat + 1)
            if len(host) <= mini // per_sector or len(table) <= mini // per_fat:
                raise ValueError("mini stream chain ends early")
            offset = mini % per_sector * 64
            parts.append(self._sector(host[-1])[offset : offset + 64])
            mini = struct.unpack_from("<I", self._sector(table[-1]), mini % per_fat * 4)[0]
        return b"".join(parts)[:want]


def _detect_ole2(fh: BinaryIO, size: int, filename: str) -> Detection:
    try:
        cfb = _Cfb(fh, size)
        streams = {name: e for name, e in cfb.root_children().items() if e.kind == 2}
        if "encryptedpackage" in streams:
            fmt = EXTENSIONS.get(filename.rsplit(".", 1)[-1].lower() if "." in filename else "")
            if fmt in ("docx", "xlsx", "pptx"):
                return Detection(fmt, "ole2", True, size, "encrypted OOXML package")
            why = "encrypted OOXML package; its type is hidden and the file name does not say"
            return Detection(None, "ole2", True, size, why)
        for names, fmt, probe in (
            (("worddocument",), "doc", _word_encrypted),
            (("workbook", "book"), "xls", _excel_encrypted),
            (("powerpoint document",), "ppt", _powerpoint_encrypted),
        ):
            for name in names:
                if name in streams:
                    encrypted, why = probe(cfb, streams, streams[name])
                    return Detection(fmt, "ole2", encrypted, size, why)
    except (ValueError, struct.error) as exc:
        return Detection(None, "ole2", False, size, f"corrupt OLE2 container ({exc})")
    if "encryptioninfo" in streams:
        return Detection(None, "ole2", True, size, "OLE2 EncryptionInfo without a known package")
    why = "OLE2 container without WordDocument, Workbook or PowerPoint Document stream"
    return Detection(None, "ole2", False, size, why)


# Each probe returns (encrypted, reason); the reason is "" when nothing is off.
def _word_encrypted(cfb: _Cfb, streams: dict[str, _Entry], entry: _Entry) -> tuple[bool, str]:
    fib = cfb.read(entry, 12)
    if len(fib) < 12:
        return False, "WordDocument stream too short for a FIB"
    ident, flags = struct.unpack_from("<H8xH", fib)
    if flags & 0x0100:  # fEncrypted; XOR obfuscation sets it too and also needs the password
        return True, "password-protected Word document"
    # Word 6/95 writers vary the signature (the corpus has 0xa699) and LibreOffice opens them.
    return False, "" if ident in (0xA5EC, 0xA5DC) else f"unusual Word FIB signature 0x{ident:04x}"


def _excel_encrypted(cfb: _Cfb, streams: dict[str, _Entry], entry: _Entry) -> tuple[bool, str]:
    data, pos = cfb.read(entry, 4096), 0
    # FILEPASS follows BOF within the first few globals records; record headers stay plaintext.
    # Workbooks "encrypted" with Excel's default VelvetSweatshop password are flagged too.
    for _ in range(64):
        if pos + 4 > len(data):
            break
        kind, length = struct.unpack_from("<HH", data, pos)
        if kind == 0x002F:
            return True, "password-protected Excel workbook (FILEPASS)"
        if kind == 0x000A:  # EOF of the globals substream
            break
        pos += 4 + length
    return False, ""


def _powerpoint_encrypted(
    cfb: _Cfb, streams: dict[str, _Entry], entry: _Entry
) -> tuple[bool, str]:
    user = streams.get("current user")
    atom = cfb.read(user, 16) if user is not None else b""
    # CurrentUserAtom.headerToken is 0xF3D1C4DF exactly when the document is encrypted.
    token = struct.unpack_from("<I", atom, 12)[0] if len(atom) == 16 else 0
    if "encryptedsummary" in streams or token == 0xF3D1C4DF:
        return True, "password-protected PowerPoint presentation"
    return False, ""
