"""The text layer of :mod:`cathnet.structure`: raw file bytes → text that gemmi parses.

gemmi stays the parser; these functions only prepare its input, field by field:

* gzip, decompressed up to :data:`MAX_BYTES`; a UTF-8 byte-order mark dropped;
* PQR: whitespace-separated records rewritten in PDB columns; a serial glued to its
  record name (``HETATM10570``, as PDB2PQR writes serials of five digits) is split off;
* PDB: a coordinate field that is not a number becomes ``nan`` (gemmi would read it as
  0), so the reader drops that atom like any other non-finite one;
* fallbacks, used only when gemmi rejects the text: PDB columns 77–80 that hold neither
  an element nor a charge (old files carry a segment id and serial in 73–80:
  ``1CIH 205``) are blanked on the lines concerned; mmCIF values with non-ASCII bytes
  (which CIF 1.1 allows only inside quotes) are quoted.

Text that cannot be used raises ValueError with a one-line reason (gemmi's own errors pass
through :func:`with_fallback`).
"""
from __future__ import annotations

import re
import zlib

import numpy as np

from cathnet.fileio import human_size

__all__ = ["MAX_BYTES", "ascii_placeholders", "decode_raw", "ends_cleanly", "fix_element_columns", "gunzip", "is_mmcif",
           "mark_bad_coordinates", "pqr_as_pdb", "quote_non_ascii", "strip_bom", "with_fallback"]

#: The largest structure file read, compressed or not (bytes).
MAX_BYTES = 1 << 30

_BOM = b"\xef\xbb\xbf"
_ATOM_RECORDS = (b"ATOM", b"HETATM")
_TEXT = bytes(range(32, 127)) + bytes(range(128, 256)) + b"\t\n\r\f\v"  # any byte but controls
_CIF_START = re.compile(rb"\s*(?:#[^\n]*\n\s*)*data_", re.I)


def decode_raw(data: bytes) -> bytes:
    """The text of raw file bytes: decompressed, without a byte-order mark, checked to be
    text (not empty, not binary)."""
    data = strip_bom(gunzip(data, MAX_BYTES) if data[:2] == b"\x1f\x8b" else data)
    if not data.strip():
        raise ValueError("empty file")
    head = data[:8192]
    if b"\0" in head or len(head.translate(None, _TEXT)) > 0.05 * len(head):
        raise ValueError("binary data, not a PDB, mmCIF or PQR text file")
    return data


def is_mmcif(data: bytes) -> bool:
    """Whether the text starts like mmCIF (``data_`` after comments)."""
    return _CIF_START.match(data) is not None


def with_fallback(parse, data: bytes, repair):
    """(parse(data), data), or with ``repair(data)`` when gemmi rejects ``data`` and the
    repair changes it; the first error when the repaired text fails too."""
    try:
        return parse(data), data
    except UnicodeDecodeError:
        raise
    except (RuntimeError, ValueError) as exc:
        fixed = repair(data)
        if fixed == data:
            raise
        try:
            return parse(fixed), fixed
        except (RuntimeError, ValueError):
            raise exc from None


def gunzip(data: bytes, limit: int) -> bytes:
    """All gzip members of ``data`` decompressed, refusing more than ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    while data[:2] == b"\x1f\x8b":
        stream = zlib.decompressobj(wbits=31)
        try:
            chunk = stream.decompress(data, limit + 1 - total)
        except zlib.error:
            raise ValueError("corrupt or truncated gzip data") from None
        total += len(chunk)
        if total > limit:
            raise ValueError(f"too large: decompresses to more than {human_size(limit)}")
        if not stream.eof:
            raise ValueError("corrupt or truncated gzip data")
        out.append(chunk)
        data = stream.unused_data.lstrip(b"\0")
    return b"".join(out)


def strip_bom(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte-order mark."""
    return data[len(_BOM):] if data.startswith(_BOM) else data


_PLACEHOLDERS = bytes(range(128)) + b"?" * 128


def ascii_placeholders(data: bytes) -> bytes:
    """``data`` with every non-ASCII byte replaced by ``?`` (one byte each: PDB columns stay)."""
    return data.translate(_PLACEHOLDERS)


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


_COORDINATES = re.compile(rb"^(?:ATOM  |HETATM).{24}(.{24})", re.M)


def mark_bad_coordinates(data: bytes) -> bytes:
    """PDB text whose coordinate fields (columns 31–54 of full atom records) that are not
    numbers read ``nan``. Lines too short to hold the coordinates are left to gemmi."""
    fields = np.array(_COORDINATES.findall(data), dtype="S24").view("S8")
    try:
        fields.astype(np.float64)
        return data
    except ValueError:
        pass
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        parts = [line[c:c + 8] for c in (30, 38, 46)]
        if line.startswith(_ATOM_RECORDS) and len(line) >= 54 and not all(map(_is_number, parts)):
            lines[i] = line[:30] + b"".join(p if _is_number(p) else b"     nan" for p in parts) + line[54:]
    return b"\n".join(lines)


_ELEMENT = re.compile(rb"\s*[A-Za-z]{0,2}")
_CHARGE = re.compile(rb"\s*|[0-9][+-]|[+-][0-9]")


def fix_element_columns(data: bytes) -> bytes:
    """PDB text with columns 77–80 blanked on atom records where they hold neither an
    element (77–78) nor a charge (79–80); a valid element is kept when only the charge
    columns are wrong."""
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(_ATOM_RECORDS) and len(line) > 76:
            element, charge = line[76:78], line[78:80].rstrip(b"\r")
            if not _ELEMENT.fullmatch(element):
                lines[i] = line[:76].rstrip()
            elif not _CHARGE.fullmatch(charge):
                lines[i] = line[:78].rstrip()
    return b"\n".join(lines)


def _quote(token: re.Match) -> bytes:
    value = token.group()
    if value.isascii() or value[:1] in (b"'", b'"'):
        return value
    quote = b'"' if b"'" in value else b"'"
    return quote + value + quote


def quote_non_ascii(data: bytes) -> bytes:
    """mmCIF text with unquoted values that hold non-ASCII bytes put in quotes (text
    fields between ``;`` lines are left alone)."""
    lines = data.split(b"\n")
    in_text = False
    for i, line in enumerate(lines):
        if line.startswith(b";"):
            in_text = not in_text
        elif not in_text and not line.isascii():
            lines[i] = re.sub(rb"\S+", _quote, line)
    return b"\n".join(lines)


_GLUED = re.compile(rb"(ATOM|HETATM)(\d+)")
_RESNUM = re.compile(rb"(-?\d+)([A-Za-z]?)")


def _pqr_line(fields: list[bytes], n: int) -> bytes:
    """One PQR atom record's fields (serial name resname [chain] resnum[icode] x y z q r)
    in PDB columns; a coordinate that is not a number becomes ``nan``."""
    glued = _GLUED.fullmatch(fields[0])
    if glued:
        fields = [glued[1], glued[2], *fields[1:]]
    if len(fields) not in (10, 11):
        raise ValueError(f"PQR line {n} has {len(fields)} fields, expected 10 or 11")
    chain = fields[4] if len(fields) == 11 else b" "
    resnum = _RESNUM.fullmatch(fields[-6])
    if resnum is None or len(fields[2]) > 4 or len(chain) > 2:
        raise ValueError(f"PQR line {n} is malformed")
    x, y, z = (float(v) if _is_number(v) else float("nan") for v in fields[-5:-2])
    name = fields[2] if len(fields[2]) == 4 else b" " + fields[2]
    return (b"%-6s%5s %-4s %3s%2s%4s%1s   %8.3f%8.3f%8.3f  1.00  0.00"
            % (fields[0][:6], fields[1][-5:], name, fields[3][:3], chain, resnum[1], resnum[2] or b" ", x, y, z))


def pqr_as_pdb(data: bytes) -> bytes:
    """Whitespace-separated PQR records rewritten in PDB columns (other records but
    MODEL, ENDMDL, TER and END dropped)."""
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if line.startswith(_ATOM_RECORDS):
            out.append(_pqr_line(line.split(), n))
        elif line.startswith((b"MODEL", b"ENDMDL", b"TER", b"END")):
            out.append(line)
    return b"\n".join(out) + b"\n"


def ends_cleanly(data: bytes, cif: bool) -> bool:
    """Whether the text ends the way complete files do: a PDB or PQR file has an END or
    ENDMDL record; an mmCIF file has something after its last atom_site row (PDBx
    writers close every category with ``#``)."""
    if not cif:
        return data.startswith(b"END") or b"\nEND" in data
    tail = data.rstrip()
    last = tail[tail.rfind(b"\n") + 1:]
    return not last.lstrip().startswith(_ATOM_RECORDS)
