from pathlib import Path

import pytest

from app.errors import EmptyFile, UnsupportedFormat
from app.media.sniff import sniff
from tests.conftest import corpus_files

EXPECTED = {"avi": "avi", "flv": "flv", "mov": "mov", "mp4": "mp4", "webm": "webm"}


@pytest.mark.parametrize("entry", [f for f in corpus_files() if f["category"] != "hostile"], ids=lambda f: f["path"])
def test_corpus_videos_are_recognised(corpus: Path, entry: dict) -> None:
    head = (corpus / entry["path"]).read_bytes()[:4096]
    assert sniff(head) == EXPECTED[entry["path"].rsplit(".", 1)[1]]


@pytest.mark.parametrize("head,kind", [
    (b"\x00\x00\x00\x18ftyp3gp4\x00\x00\x00\x00", "3gp"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "mov"),
    (b"\x1a\x45\xdf\xa3\x93\x42\x82\x88matroska", "mkv"),
    (b"\x00\x00\x01\xba" + b"\x44" * 20, "mpeg-ps"),
    (b"\x47" + b"\x00" * 187 + b"\x47" + b"\x00" * 10, "mpeg-ts"),
])
def test_magic_numbers(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize("head,described", [
    (b"%PDF-1.7 ...", "PDF"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"<!doctype html><html>", "HTML"),
    ("hello 你好".encode(), "plain text"), (b"\xde\xad\xbe\xef\xff\xfe", "binary"),
])
def test_non_video_is_refused_with_what_it_is(head: bytes, described: str) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        sniff(head)
    assert described in info.value.message and info.value.code == "unsupported_format"


def test_empty() -> None:
    with pytest.raises(EmptyFile):
        sniff(b"")
