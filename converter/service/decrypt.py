"""Opening encrypted Microsoft Office sources with msoffcrypto-tool, before LibreOffice sees them.

LibreOffice answers a wrong password and an encryption it does not support the
same way (no document), and it cannot open some schemes at all (CryptoAPI
PowerPoint, for one). Decrypting OOXML and the 97-2003 formats here tells the
two apart exactly, and hands the engine a plain copy inside the conversion's
scratch directory, which is removed with it. OpenDocument encryption is left to
LibreOffice, which receives the password as a load property.
"""

from __future__ import annotations

from pathlib import Path

import msoffcrypto
from msoffcrypto.exceptions import (
    DecryptionError,
    FileFormatError,
    InvalidKeyError,
    ParseError,
)

from converter.errors import PasswordIncorrect, UnprocessableDocument

# Formats whose encryption msoffcrypto-tool handles; ODF is opened by LibreOffice.
HANDLED = frozenset({"docx", "xlsx", "pptx", "doc", "xls", "ppt"})


def handles(fmt: str) -> bool:
    """Whether sources of this format are decrypted here rather than by LibreOffice."""
    return fmt in HANDLED


def decrypt(source: Path, password: str, out: Path) -> None:
    """Write the plain document of an encrypted source to out; 400 for a wrong password."""
    try:
        with source.open("rb") as fh:
            office = msoffcrypto.OfficeFile(fh)
            office.load_key(password=password)
            with out.open("wb") as plain:
                office.decrypt(plain)
    except InvalidKeyError:
        out.unlink(missing_ok=True)
        raise PasswordIncorrect("options.password does not open this encrypted document",
                                field="options.password") from None
    except (DecryptionError, FileFormatError, ParseError, ValueError, OSError) as exc:
        # ValueError covers what the cipher library refuses (odd key sizes, for one).
        out.unlink(missing_ok=True)
        if "password" in str(exc).lower() or "key" in str(exc).lower() and (
                "invalid" in str(exc).lower() and "size" not in str(exc).lower()):
            raise PasswordIncorrect("options.password does not open this encrypted "
                                    "document", field="options.password") from None
        raise UnprocessableDocument(
            f"The document's encryption is not supported: {type(exc).__name__}") from None
