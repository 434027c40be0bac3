"""Streaming multipart upload: the size limit is enforced while bytes arrive, never after."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import aiofiles
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import EmptyFile, InvalidRequest, TooLarge
from app.media.sniff import SNIFF_BYTES, sniff

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    container: str | None = None


async def receive_upload(request: Request, dest: Path, max_bytes: int) -> Upload:
    """Parse a multipart body; the part named `file` is streamed to `dest`. Removes `dest` on error."""
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise InvalidRequest("file: send multipart/form-data with a part named 'file'")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + MAX_FIELD_BYTES:
        raise TooLarge(f"the upload is {int(length) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")

    up = Upload()
    state: dict[str, object] = {"headers": {}, "name": None, "buf": bytearray()}
    pending: list[bytes] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        state["headers"], state["name"], state["buf"] = {}, None, bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if name == "file":
            if up.filename is not None:
                raise InvalidRequest("file: send exactly one file")
            up.filename = disp.get(b"filename", b"").decode("utf-8", "replace")[:255]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if state["name"] == "file":
            up.size += len(chunk)
            if up.size > max_bytes:
                raise TooLarge(f"the upload exceeds the {max_bytes / 1e6:.0f} MB limit")
            pending.append(bytes(chunk))
        else:
            buf = state["buf"]
            assert isinstance(buf, bytearray)
            buf.extend(chunk)
            if len(buf) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"{state['name']}: field is too long")

    def on_part_end() -> None:
        name = state["name"]
        if name and name != "file":
            buf = state["buf"]
            assert isinstance(buf, bytearray)
            up.fields[str(name)] = buf.decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    dest.parent.mkdir(parents=True, exist_ok=True)
    head = bytearray()
    try:
        async with aiofiles.open(dest, "wb") as out:
            async for chunk in request.stream():
                parser.write(chunk)
                for piece in pending:
                    if len(head) < SNIFF_BYTES:
                        head.extend(piece[: SNIFF_BYTES - len(head)])
                        if len(head) >= SNIFF_BYTES and up.container is None:
                            up.container = sniff(bytes(head))
                    await out.write(piece)
                pending.clear()
            parser.finalize()
        if up.filename is None:
            raise InvalidRequest("file: field required (a part named 'file')")
        if up.size == 0:
            raise EmptyFile("file: the uploaded file is empty (0 bytes)")
        if up.container is None:
            up.container = sniff(bytes(head))
    except MultipartParseError as exc:
        dest.unlink(missing_ok=True)
        raise InvalidRequest(f"file: malformed multipart body ({exc})") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return up
