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
from typing import BinaryIO

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
}
ODF_MIMETYPES = {
    f"application/vnd.oasis.opendocument.{kind}{suffix}": fmt
    for kind, fmt in (("text", "odt"), ("spreadsheet", "ods"), ("presentation", "odp"))
    for suffix in ("", "-template")
}
OOXML_MAIN_PARTS = {
    "word/document.xml": "docx", "xl/workbook.xml": "xlsx", "ppt/presentation.xml": "pptx",
}
NO_OFFICE_PARTS = (
    "zip archive without word/document.xml, xl/workbook.xml, ppt/presentation.xml"
    " or an ODF mimetype"
)


@dataclass(frozen=True)
class Detection:
    """What the bytes of an upload really are."""

    format: str | None
    container: str
    encrypted: bool
    uncompressed_size: int
    reason: str = ""


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
            found = _detect_zip(fh)
            if isinstance(found, Detection):
                return found
            return Detection(None, "zip", False, size, f"truncated or corrupt zip archive{found}")
        text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\f")
        if text.startswith(b"{\\rtf"):
            return Detection("rtf", "rtf", False, size)
        # Readers accept junk before the header, so look where they look: the first KiB.
        if b"%PDF-" in head[:1024]:
            return Detection(None, "pdf", False, size, "PDF is not a supported source format")
        # A zip may carry a prefix (self-extractors); zipfile finds it from the end record.
        if _has_zip_directory(fh):
            found = _detect_zip(fh)
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
    if b"\x00" in head:
        return False
    try:
        # Not final unless the whole file is here: the 8 KiB cut may split a character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _has_zip_directory(fh: BinaryIO) -> bool:
    try:
        return zipfile.is_zipfile(fh)
    except (OSError, ValueError, struct.error):
        return False


def _detect_zip(fh: BinaryIO) -> Detection | str:
    """Classify a zip by member names, or say why zipfile could not read it."""
    try:
        with zipfile.ZipFile(fh) as zf:
            return _classify_zip(zf)
    # zipfile raises a zoo of types on hostile archives (BadZipFile, ValueError, zlib.error,
    # struct.error, RuntimeError for encrypted members, ...); all of them mean "corrupt".
    except Exception as exc:
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc):
            return " (no central directory)"
        return f" ({_printable(str(exc))})"


def _classify_zip(zf: zipfile.ZipFile) -> Detection:
    infos = zf.infolist()
    total = sum(info.file_size for info in infos)
    members = {info.filename.lower(): info for info in infos}
    # Traditional zip encryption never comes from an office suite, and LibreOffice cannot open it.
    encrypted = any(info.flag_bits & 1 for info in infos)
    reason = "zip members are password-encrypted" if encrypted else ""

    mimetype = members.get("mimetype")
    media_type = ""
    if mimetype is not None:
        media_type = _read_member(zf, mimetype, 256).strip().decode("ascii", "replace")
    manifest = members.get("meta-inf/manifest.xml")
    manifest_xml = _read_member(zf, manifest, MEMBER_CAP) if manifest is not None else b""
    if not media_type and manifest_xml:
        # ODF allows omitting the mimetype member; the manifest's root entry says the same.
        root = re.search(rb'full-path="/"[^>]*?media-type="([^"]{1,100})"', manifest_xml)
        media_type = root.group(1).decode("ascii", "replace") if root else ""
    if media_type.startswith("application/vnd.oasis.opendocument."):
        fmt = ODF_MIMETYPES.get(media_type)
        if re.search(rb"<(?:[\w.-]+:)?encryption-data[\s/>]", manifest_xml):
            encrypted, reason = True, "password-protected OpenDocument (manifest encryption-data)"
        if fmt is None:
            reason = f"OpenDocument type {_printable(media_type)} is not a supported source"
        return Detection(fmt, "zip", encrypted, total, reason)

    if "[content_types].xml" in members:
        for part, fmt in OOXML_MAIN_PARTS.items():
            if part in members:
                return Detection(fmt, "zip", encrypted, total, reason)
        fmt, why = _ooxml_from_rels(zf, members)
        return Detection(fmt, "zip", encrypted, total, why or reason)
    if media_type:
        return Detection(
            None, "zip", encrypted, total, f"zip archive with mimetype {_printable(media_type)}"
        )
    return Detection(None, "zip", encrypted, total, NO_OFFICE_PARTS)


def _ooxml_from_rels(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> tuple[
    str | None, str
]:
    """Find the main part via _rels/.rels when it has a non-standard name."""
    rels = members.get("_rels/.rels")
    text = _read_member(zf, rels, MEMBER_CAP).decode("utf-8", "replace") if rels else ""
    target = ""
    for tag in re.findall(r"<(?:\w+:)?Relationship\b[^>]*>", text):
        attrs = dict(re.findall(r'(\w+)\s*=\s*["\']([^"\']*)["\']', tag))
        if attrs.get("Type", "").endswith("/officeDocument"):
            target = attrs.get("Target", "").lstrip("/").lower()
            break
    info = members.get(target) if target else None
    if info is None:
        return None, NO_OFFICE_PARTS + " (and _rels/.rels names no main part present)"
    content_types = _read_member(zf, members["[content_types].xml"], MEMBER_CAP).decode(
        "utf-8", "replace"
    )
    kind = ""
    for tag in re.findall(r"<(?:\w+:)?Override\b[^>]*>", content_types):
        attrs = dict(re.findall(r'(\w+)\s*=\s*["\']([^"\']*)["\']', tag))
        if attrs.get("PartName", "").lstrip("/").lower() == target:
            kind = attrs.get("ContentType", "").lower()
            break
    if ".binary." in kind:
        return None, "binary OOXML workbook (xlsb) is not a supported source"
    for marker, fmt in (("wordprocessingml", "docx"), ("ms-word", "docx"),
                        ("spreadsheetml", "xlsx"), ("ms-excel", "xlsx"),
                        ("presentationml", "pptx"), ("ms-powerpoint", "pptx")):
        if marker in kind:
            return fmt, f"main part is {target}"
    return None, f"main part {target} has unknown content type {_printable(kind) or 'none'}"


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    # read(cap) stops inflating after cap bytes, whatever size the header declares.
    with zf.open(info) as member:
        return member.read(cap)


def _printable(value: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in value[:80])


class _Malformed(ValueError):
    """The CFB structures contradict themselves or point outside the file."""


@dataclass(frozen=True)
class _Entry:
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
        header = fh.read(512)
        if len(header) < 512:
            raise _Malformed("header shorter than 512 bytes")
        byte_order, shift, mini_shift = struct.unpack_from("<HHH", header, 28)
        if byte_order != 0xFFFE or shift not in (9, 12) or mini_shift != 6:
            raise _Malformed("invalid header: byte order or sector sizes")
        (first_dir, self.cutoff, first_minifat, _, self.next_difat,
         self.difat_left) = struct.unpack_from("<I4xIIIII", header, 48)
        self.fh, self.size, self.shift = fh, size, shift
        self.ssize, self.mini_ssize = 1 << shift, 1 << mini_shift
        self.difat = list(struct.unpack_from("<109I", header, 76))
        self.fat_cache: dict[int, bytes] = {}
        self.chains: dict[int, list[int]] = {}
        self.entries = self._directory(first_dir)
        if not self.entries or self.entries[0].kind != 5:
            raise _Malformed("directory does not start with a root entry")
        self.first_minifat = first_minifat

    def _sector(self, sector: int) -> bytes:
        offset = (sector + 1) << self.shift
        if sector > 0xFFFFFFFA or offset >= self.size:
            raise _Malformed(f"sector {sector} lies outside the file")
        self.fh.seek(offset)
        return self.fh.read(self.ssize)

    def _fat_sector(self, index: int) -> int:
        # The first 109 FAT sectors are listed in the header, the rest in a DIFAT chain.
        per = self.ssize // 4 - 1
        while index >= len(self.difat) and self.difat_left > 0 and self.next_difat <= 0xFFFFFFFA:
            data = self._sector(self.next_difat).ljust(self.ssize, b"\xff")
            self.difat.extend(struct.unpack_from(f"<{per}I", data))
            self.next_difat = struct.unpack_from("<I", data, per * 4)[0]
            self.difat_left -= 1
        if index >= len(self.difat):
            raise _Malformed("FAT sector beyond the DIFAT")
        return self.difat[index]

    def _next(self, sector: int) -> int:
        # Checked first so a wild sector number cannot send the DIFAT walk far past the file.
        if (sector + 1) << self.shift >= self.size:
            raise _Malformed(f"sector {sector} lies outside the file")
        per = self.ssize // 4
        fat_sector = self._fat_sector(sector // per)
        if fat_sector not in self.fat_cache:
            self.fat_cache[fat_sector] = self._sector(fat_sector).ljust(self.ssize, b"\xff")
        value: int = struct.unpack_from("<I", self.fat_cache[fat_sector], sector % per * 4)[0]
        return value

    def _chain(self, start: int, length: int) -> list[int]:
        """First ``length`` sectors of the chain at ``start``; shorter if it ends or loops."""
        chain = self.chains.setdefault(start, [start] if start <= 0xFFFFFFFA else [])
        while 0 < len(chain) < min(length, MAX_CHAIN):
            following = self._next(chain[-1])
            if following > 0xFFFFFFFA or following in chain[-64:]:
                break
            chain.append(following)
        return chain[:length]

    def _directory(self, first: int) -> list[_Entry]:
        entries = []
        for sector in self._chain(first, MAX_DIR_BYTES >> self.shift):
            data = self._sector(sector)
            for pos in range(0, len(data) - 127, 128):
                name_len, kind = struct.unpack_from("<HB", data, pos + 64)
                left, right, child = struct.unpack_from("<III", data, pos + 68)
                start, size = struct.unpack_from("<IQ", data, pos + 116)
                if self.shift == 9:
                    size &= 0xFFFFFFFF  # version 3 readers must ignore the high half
                name = data[pos : pos + min(max(name_len - 2, 0), 62)].decode("utf-16-le", "replace")
                entries.append(_Entry(name, kind, left, right, child, start, size))
        return entries

    def root_children(self) -> dict[str, _Entry]:
        """Entries directly under the root, by lower-cased name (CFB names ignore case)."""
        found: dict[str, _Entry] = {}
        stack, seen = [self.entries[0].child], set()
        while stack:
            index = stack.pop()
            if index >= len(self.entries) or index in seen:
                continue
            seen.add(index)
            entry = self.entries[index]
            found[entry.name.lower()] = entry
            stack += (entry.left, entry.right)
        return found

    def read(self, entry: _Entry, limit: int) -> bytes:
        """Up to ``limit`` bytes from the start of a stream."""
        want = min(limit, entry.size)
        if entry.size >= self.cutoff:
            count = -(-want // self.ssize)
            data = b"".join(self._sector(s) for s in self._chain(entry.start, count))
            return data[:want]
        # Small streams live in the mini stream, itself a regular stream owned by the root.
        root, per_sector = self.entries[0], self.ssize // self.mini_ssize
        parts, mini = [], entry.start
        for _ in range(-(-want // self.mini_ssize)):
            if mini > 0xFFFFFFFA:
                break
            host = self._chain(root.start, mini // per_sector + 1)
            if len(host) <= mini // per_sector:
                raise _Malformed("mini sector outside the mini stream")
            offset = mini % per_sector * self.mini_ssize
            parts.append(self._sector(host[-1])[offset : offset + self.mini_ssize])
            minifat = self._chain(self.first_minifat, mini // (self.ssize // 4) + 1)
            if len(minifat) <= mini // (self.ssize // 4):
                raise _Malformed("mini sector outside the mini FAT")
            table = self._sector(minifat[-1])
            mini = struct.unpack_from("<I", table, mini % (self.ssize // 4) * 4)[0]
        return b"".join(parts)[:want]


def _detect_ole2(fh: BinaryIO, size: int, filename: str) -> Detection:
    try:
        cfb = _Cfb(fh, size)
        streams = {name: e for name, e in cfb.root_children().items() if e.kind == 2}
        if "encryptedpackage" in streams:
            ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
            fmt = EXTENSIONS.get(ext)
            if fmt in ("docx", "xlsx", "pptx"):
                return Detection(fmt, "ole2", True, size, "encrypted OOXML package")
            return Detection(None, "ole2", True, size, (
                "encrypted OOXML package; its type is hidden and the file name does not say"
            ))
        if "worddocument" in streams:
            return _word(cfb, streams["worddocument"], size)
        if "workbook" in streams or "book" in streams:
            return _excel(cfb, streams.get("workbook") or streams["book"], size)
        if "powerpoint document" in streams:
            return _powerpoint(cfb, streams, size)
    except (ValueError, struct.error) as exc:
        return Detection(None, "ole2", False, size, f"corrupt OLE2 container ({exc})")
    if "encryptioninfo" in streams:
        return Detection(None, "ole2", True, size, "OLE2 EncryptionInfo without a known package")
    return Detection(None, "ole2", False, size, (
        "OLE2 container without WordDocument, Workbook or PowerPoint Document stream"
    ))


def _word(cfb: _Cfb, entry: _Entry, size: int) -> Detection:
    fib = cfb.read(entry, 12)
    if len(fib) < 12:
        return Detection("doc", "ole2", False, size, "WordDocument stream too short for a FIB")
    ident, flags = struct.unpack_from("<H8xH", fib)
    if flags & 0x0100:  # fEncrypted; XOR obfuscation sets it too and also needs the password
        return Detection("doc", "ole2", True, size, "password-protected Word document")
    # Word 6/95 writers vary the signature (the corpus has 0xa699) and LibreOffice opens them.
    unusual = "" if ident in (0xA5EC, 0xA5DC) else f"unusual Word FIB signature 0x{ident:04x}"
    return Detection("doc", "ole2", False, size, unusual)


def _excel(cfb: _Cfb, entry: _Entry, size: int) -> Detection:
    data, pos = cfb.read(entry, 4096), 0
    # FILEPASS follows BOF within the first few globals records; record headers stay plaintext.
    # Workbooks "encrypted" with Excel's default VelvetSweatshop password are flagged too.
    for _ in range(64):
        if pos + 4 > len(data):
            break
        kind, length = struct.unpack_from("<HH", data, pos)
        if kind == 0x002F:
            return Detection("xls", "ole2", True, size, "password-protected Excel workbook")
        if kind == 0x000A:  # EOF of the globals substream
            break
        pos += 4 + length
    return Detection("xls", "ole2", False, size)


def _powerpoint(cfb: _Cfb, streams: dict[str, _Entry], size: int) -> Detection:
    if "encryptedsummary" in streams:
        return Detection("ppt", "ole2", True, size, "password-protected PowerPoint presentation")
    user = streams.get("current user")
    atom = cfb.read(user, 16) if user is not None else b""
    # CurrentUserAtom.headerToken is 0xF3D1C4DF exactly when the document is encrypted.
    if len(atom) == 16 and struct.unpack_from("<I", atom, 12)[0] == 0xF3D1C4DF:
        return Detection("ppt", "ole2", True, size, "password-protected PowerPoint presentation")
    return Detection("ppt", "ole2", False, size)
