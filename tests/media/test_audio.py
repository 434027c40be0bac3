from pathlib import Path

import numpy as np
import pytest

from app.errors import DecodeFailed
from app.media.audio import SAMPLE_RATE, audio_args, extract_audio


def test_audio_args_decode_no_video() -> None:
    args = audio_args(Path("/x.mp4"), 12.5)
    assert "-vn" in args and args[args.index("-map") + 1] == "0:a:0"
    assert args[args.index("-ar") + 1] == "16000" and args[args.index("-ac") + 1] == "1"
    assert args[args.index("-t") + 1] == "12.500" and "file" in args[args.index("-protocol_whitelist") + 1]


async def test_speech_clip_is_16k_mono_and_loud_where_he_speaks(corpus: Path) -> None:
    audio = await extract_audio(corpus / "variants/chaplin_jfk_speech.mp4", start_s=0.0, max_seconds=60, timeout_s=30)
    assert SAMPLE_RATE == 16000 and audio.samples.dtype == np.float32
    assert audio.duration_s == pytest.approx(11.0, abs=0.1)
    assert float(np.abs(audio.samples).max()) <= 1.0 and float(np.sqrt((audio.samples ** 2).mean())) > 0.01


async def test_silence_stays_silent_and_no_audio_track_fails(corpus: Path) -> None:
    audio = await extract_audio(corpus / "variants/concat_chaplin_city_cut4s.mp4", start_s=0.0, max_seconds=60,
                                timeout_s=30)
    tail = audio.samples[int(4.5 * SAMPLE_RATE):]  # 4-8 s is digital silence
    assert len(tail) > 3 * SAMPLE_RATE and float(np.abs(tail).max()) < 1e-3
    with pytest.raises(DecodeFailed):
        await extract_audio(corpus / "variants/chaplin_audio_stripped.mp4", start_s=0.0, max_seconds=60, timeout_s=30)
