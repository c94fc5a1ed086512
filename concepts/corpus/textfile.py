"""Reading a corpus file as text lines, with errors a user can act on: a byte that does not
decode is reported with the file, line and column (no traceback), and a byte-order mark at the
start is accepted. UTF-8 by default; `corpus.encoding` names another (latin-1, cp1252, utf-16...)."""

from __future__ import annotations

import codecs
import io
import lzma
from collections.abc import Iterator
from pathlib import Path

from concepts.core.errors import UserError


def check_encoding(encoding: str) -> str:
    """The codec's canonical name; a `UserError` for an unknown one."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"corpus.encoding={encoding!r} is not a known text encoding; "
                        "use e.g. utf-8, latin-1, cp1252 or utf-16") from None


def source_name(path: Path) -> str:
    """A corpus file's name as sentences cite it: without `.xz`, so a compressed copy reads the same."""
    return Path(path).name.removesuffix(".xz")


def text_lines(path: Path, what: str = "file", encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its newline) of a text file in `encoding`."""
    path = Path(path)
    codec = check_encoding(encoding)
    try:
        # .xz: read compressed, through a C-level buffer (LZMAFile's own readline is Python, per line)
        fh = io.BufferedReader(lzma.open(path, "rb"), 1 << 16) if path.suffix == ".xz" else open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror}") from None
    name = "UTF-8" if codec == "utf-8" else encoding
    hint = ("is it a text file? Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8) or name its encoding "
            "with corpus.encoding=...")
    with fh:
        if codec.startswith(("utf-16", "utf-32")):  # newlines are several bytes: decode as a stream
            try:
                text = codecs.getreader(codec)(fh).read()
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: not {name} text ({e.reason} at byte {e.start}); {hint}") from None
            for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
                yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line
            return
        try:
            yield from _decoded(fh, path, codec, name, hint)
        except lzma.LZMAError as e:
            raise UserError(f"{path}: not a valid .xz file ({e}); decompress it or fetch it again") from None


def _decoded(fh, path: Path, codec: str, name: str, hint: str) -> Iterator[tuple[int, str]]:
    for lineno, raw in enumerate(fh, start=1):
        try:
            line = raw.decode(codec)
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{lineno}: not {name} text (byte 0x{raw[e.start]:02x} at column "
                            f"{e.start + 1}); {hint}") from None
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        yield lineno, line
