"""Decide a container format from the first bytes of a file, never from its name.

Accepted (seed: mp4, avi, mov, 3gpp, x-flv; plus webm, mkv, mpeg-ps and mpeg-ts).
"""

from __future__ import annotations

from app.errors import EmptyFile, UnsupportedFormat

SNIFF_BYTES = 4096

# ISO-BMFF major/compatible brands -> our container name.
_QT_BRANDS = {b"qt  "}
_3GP_PREFIXES = (b"3gp", b"3g2")


def sniff(head: bytes) -> str:
    """Return one of mp4, mov, 3gp, avi, flv, webm, mkv, mpeg-ps, mpeg-ts; raise otherwise."""
    if not head:
        raise EmptyFile("the file is empty (0 bytes)")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _QT_BRANDS:
            return "mov"
        if brand.startswith(_3GP_PREFIXES):
            return "3gp"
        return "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"  # old QuickTime files without ftyp
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg-ps"
    if len(head) >= 189 and head[0] == 0x47 and head[188] == 0x47:
        return "mpeg-ts"
    kind = _describe(head)
    raise UnsupportedFormat(
        f"not a supported video container ({kind}); accepted: mp4, mov, 3gp, avi, flv, webm, mkv, mpeg-ps, mpeg-ts"
    )


def _describe(head: bytes) -> str:
    for magic, name in ((b"%PDF", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                        (b"GIF8", "a GIF image"), (b"PK\x03\x04", "a zip archive"), (b"ID3", "an MP3 audio file"),
                        (b"<", "HTML or XML text")):
        if head.startswith(magic) or head.lstrip().startswith(magic):
            return name
    try:
        head.decode("utf-8")
        return "plain text"
    except UnicodeDecodeError:
        return "unrecognised binary data"
