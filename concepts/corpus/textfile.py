"""Reading a corpus file as UTF-8 lines, with errors a user can act on: a byte that is not
UTF-8 is reported with the file, line and column (no traceback), and a UTF-8 byte-order mark
at the start is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from concepts.errors import UserError


def utf8_lines(path: Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its newline) of a UTF-8 text file."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                                "is it a text file? Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            yield lineno, line
