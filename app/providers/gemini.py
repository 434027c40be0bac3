"""The Gemini provider (`TAGGER=gemini`): google-genai over the Redis account pool.

One analysis:
    small video (<= GEMINI_INLINE_MAX_MB)   acquire -> generateContent with inline bytes
    larger video                            acquire (reserves the generate slot) -> resumable
                                            upload -> poll until ACTIVE -> touch (re-date the slot
                                            to now; else acquire that same account again) ->
                                            generateContent -> delete; one account throughout,
                                            because uploaded files are visible only in their project
    malformed JSON                          one repair request (any account), then ProviderBadOutput

Every call goes through `AccountPool.acquire_wait` (which records the use in Redis before
the request leaves) and reports back: a 429 cools the project down, a refused key goes
inactive (also in SQL), 5xx/network errors back the account off and the call is retried
on another account, up to GEMINI_MAX_ATTEMPTS. SDK errors are translated here, at the
boundary, into the project's error tree; the API key never reaches a log or a message
(Google echoes it in some 403 messages: `scrub` removes it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sqlalchemy.orm import Session, sessionmaker

from app.accounts import AccountPool, CallFailure, Lease
from app.config import Settings
from app.errors import PoolExhausted, ProviderBadOutput, ProviderRejected, ProviderUnavailable, VttError
from app.providers.base import MediaInput, ProviderOutput
from app.providers.pooled import PooledProvider, Tally, final_error
from app.tags import Sighting, normalise_name

log = logging.getLogger("gemini")

DEFAULT_CONFIDENCE = 0.8  # a tag the model listed without a confidence
MAX_TAGS = 40
_KEY_RE = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_DELAY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)s\s*$")

PROMPT = (
    "You tag videos for a search index. Watch the whole video (pictures and sound) and reply with JSON only:\n"
    "- tags: up to {max_tags} short, lowercase names of what is shown or heard (objects, animals, people's "
    "roles, places, actions, sounds, on-screen text topics), each with a confidence between 0 and 1;\n"
    "- description: one to three plain sentences;\n"
    "- categories: a few broad topics (e.g. sports, cooking, music);\n"
    "- language: the BCP-47 code of the main spoken language, or \"none\";\n"
    "- key_moments: the notable moments, each with start_s and end_s in seconds from the start of the "
    "video, a short description and the tags that apply to it.\n"
)
FOCUS = {
    "vision": "Consider only what is visible; ignore the sound.",
    "audio": "Consider only what is heard (speech, music, sounds); ignore the pictures.",
    "text": "Consider only text shown on screen.",
}


# --- the answer ---------------------------------------------------------------------
class GeminiTag(BaseModel):
    name: str = Field(min_length=1, max_length=191)
    confidence: float | None = Field(default=None, ge=0, le=1)


class KeyMoment(BaseModel):
    start_s: float = Field(ge=0)
    end_s: float = Field(ge=0)
    description: str = ""
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> KeyMoment:
        if self.end_s < self.start_s:
            raise ValueError("end_s is before start_s")
        return self


class GeminiAnswer(BaseModel):
    tags: list[GeminiTag]
    description: str = ""
    categories: list[str] = Field(default_factory=list)
    language: str | None = None
    key_moments: list[KeyMoment] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _cap(cls, v: list[GeminiTag]) -> list[GeminiTag]:
        return v[:MAX_TAGS]


def response_schema() -> Any:
    """The OpenAPI schema Gemini must follow (types.Schema; built lazily with the SDK)."""
    from google.genai import types

    t = types.Type
    string, number = types.Schema(type=t.STRING), types.Schema(type=t.NUMBER)
    return types.Schema(type=t.OBJECT, required=["tags", "description", "categories", "language", "key_moments"],
                        properties={
        "tags": types.Schema(type=t.ARRAY, items=types.Schema(
            type=t.OBJECT, required=["name"], properties={"name": string, "confidence": number})),
        "description": string,
        "categories": types.Schema(type=t.ARRAY, items=string),
        "language": string,
        "key_moments": types.Schema(type=t.ARRAY, items=types.Schema(
            type=t.OBJECT, required=["start_s", "end_s"],
            properties={"start_s": number, "end_s": number, "description": string,
                        "tags": types.Schema(type=t.ARRAY, items=string)})),
    })


def parse_answer(text: str | None) -> GeminiAnswer:
    """The model's text -> a validated answer (pure). Tolerates a ```json fence; raises ValueError."""
    if not text or not text.strip():
        raise ValueError("the reply was empty")
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    try:
        return GeminiAnswer.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'reply'}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False)[:10])
        raise ValueError(f"does not match the schema ({problems})") from None


def sightings_from(answer: GeminiAnswer, start_s: float, duration_s: float) -> list[Sighting]:
    """Tags -> sightings (source "gemini") over their key moments, else over the whole video (pure).

    Key-moment times are seconds from the start of the video; they are clamped into it.
    """
    end_s = start_s + max(0.0, duration_s)

    def span(m: KeyMoment) -> tuple[float, float]:
        a = min(end_s, start_s + m.start_s)
        return a, max(a, min(end_s, start_s + m.end_s))

    moments: dict[str, list[tuple[float, float]]] = {}
    for m in answer.key_moments:
        for name in m.tags:
            moments.setdefault(normalise_name(name), []).append(span(m))
    out: list[Sighting] = []
    listed: set[str] = set()
    for tag in answer.tags:
        key = normalise_name(tag.name)
        listed.add(key)
        conf = tag.confidence if tag.confidence is not None else DEFAULT_CONFIDENCE
        for a, b in moments.get(key) or [(start_s, end_s)]:
            out.append(Sighting(tag.name, conf, "gemini", a, b))
    for m in answer.key_moments:  # a tag named only in a moment still counts there
        for name in m.tags:
            if normalise_name(name) not in listed:
                a, b = span(m)
                out.append(Sighting(name, DEFAULT_CONFIDENCE, "gemini", a, b))
    return out


def mime_type(container: str) -> str:
    """ffprobe's format_name -> a MIME type Gemini accepts for video.

    ffprobe names the whole ISO family "mov,mp4,m4a,3gp,3g2,mj2": it goes as video/mp4.
    """
    names = container.lower().split(",")
    table = [("mp4", "video/mp4"), ("webm", "video/webm"), ("matroska", "video/webm"), ("avi", "video/avi"),
             ("flv", "video/x-flv"), ("mpegts", "video/mpeg"), ("mpeg", "video/mpeg"), ("asf", "video/wmv")]
    for name, mime in table:
        if name in names:
            return mime
    return "video/mp4"


# --- errors at the boundary -----------------------------------------------------------
def scrub(text: str, api_key: str | None = None) -> str:
    """Remove API keys from text that came from the wire (Google echoes them in some 403s)."""
    if api_key:
        text = text.replace(api_key, "[key]")
    return _KEY_RE.sub("[key]", text)


def retry_delay_s(value: object) -> float | None:
    """RetryInfo.retryDelay ("47s", "1.5s") -> seconds."""
    m = _DELAY_RE.match(value) if isinstance(value, str) else None
    return float(m.group(1)) if m else None


def classify_api_error(code: int, status: str | None, message: str | None, body: Any,
                       api_key: str | None = None) -> CallFailure:
    """A Gemini error reply -> the pool's CallFailure (pure). See WIRE.md for the bodies."""
    details: list[Any] = []
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("details"), list):
            details = err["details"]
    quota_ids: list[str] = []
    reasons: list[str] = []
    delay: float | None = None
    for d in details:
        if not isinstance(d, dict):
            continue
        kind = str(d.get("@type", ""))
        if kind.endswith("google.rpc.QuotaFailure"):
            quota_ids += [str(v.get("quotaId", "")) for v in d.get("violations") or [] if isinstance(v, dict)]
        elif kind.endswith("google.rpc.RetryInfo"):
            delay = retry_delay_s(d.get("retryDelay"))
        elif kind.endswith("google.rpc.ErrorInfo"):
            reasons.append(str(d.get("reason", "")))
    msg = scrub(str(message or ""), api_key)[:200]
    reason = f"{code} {status or ''}: {msg}".strip()
    if code == 429:
        if any("PerDay" in q for q in quota_ids):
            return CallFailure("quota_day", reason, delay)
        if any("PerMinute" in q for q in quota_ids) or delay is not None:
            return CallFailure("quota_minute", reason, delay)
        return CallFailure("quota", reason)
    if code in (401, 403):
        return CallFailure("auth", reason)
    lowered = msg.lower()
    if code == 400 and ("API_KEY_INVALID" in reasons or "api key not valid" in lowered or "api key expired" in lowered):
        return CallFailure("auth", reason)
    if code == 408 or code >= 500:
        return CallFailure("server", reason)
    return CallFailure("rejected", reason)


def classify_exception(exc: BaseException, api_key: str | None = None) -> CallFailure:
    """Any exception from an SDK call -> CallFailure (network for transport errors)."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return classify_api_error(int(exc.code or 0), exc.status, exc.message, exc.details, api_key)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return CallFailure("network", "timeout: no reply within GEMINI_TIMEOUT_S")
    return CallFailure("network", f"{type(exc).__name__}: {scrub(str(exc), api_key)[:200]}")


def error_for(failure: CallFailure, retry_after: float | None = None) -> VttError:
    """The error a task fails with when a failure is final (or the attempts run out)."""
    return final_error(failure, "Gemini", retry_after)


class _AccountLost(Exception):
    """The account holding an uploaded file was refused: start over with another account."""


# --- the provider ---------------------------------------------------------------------
class _Tally(Tally):
    def add(self, response: Any, lease: Lease) -> None:
        u = getattr(response, "usage_metadata", None)
        self.record(lease, int(getattr(u, "prompt_token_count", 0) or 0) if u else 0,
                    int(getattr(u, "candidates_token_count", 0) or 0) if u else 0,
                    int(getattr(u, "total_token_count", 0) or 0) if u else 0)


class GeminiProvider(PooledProvider):
    name = "gemini"

    def __init__(self, settings: Settings, *, pool: AccountPool | None = None,
                 sessions: sessionmaker[Session] | None = None) -> None:
        """`pool` / `sessions` default to the Redis and SQL named by `settings`, made on first use."""
        try:
            from google import genai
            from google.genai import types
        except ImportError as exc:  # pragma: no cover - requirements.txt pins it
            raise RuntimeError("the gemini tagger needs google-genai: pip install google-genai") from exc
        self._genai, self._types = genai, types
        super().__init__(settings, pool=pool, sessions=sessions)

    def _make_client(self, lease: Lease) -> Any:
        t = self._types
        opts = t.HttpOptions(timeout=int(self.settings.gemini_timeout_s * 1000),
                             # attempts=1: we retry, on another account; it also turns off the
                             # SDK's hidden 1-10 s aiohttp retry that would spend quota unseen.
                             retry_options=t.HttpRetryOptions(attempts=1))
        if self.settings.gemini_base_url:
            opts.base_url = self.settings.gemini_base_url
        if self.settings.gemini_api_version:
            opts.api_version = self.settings.gemini_api_version
        return self._genai.Client(api_key=lease.api_key, http_options=opts)

    async def _close_client(self, client: Any) -> None:
        await client.aio.aclose()

    # -- analysis --
    async def analyse(self, media: MediaInput, progress: Callable[[str, float], Any]) -> ProviderOutput:
        t0 = time.perf_counter()
        pool = await self.pool()
        deadline = time.monotonic() + self.settings.gemini_pool_wait_s
        tally = _Tally()
        size = media.path.stat().st_size
        mime = mime_type(media.probe.container)
        prompt = PROMPT.format(max_tags=MAX_TAGS) + (FOCUS.get(media.dimensions, ""))
        transport = "inline" if size <= self.settings.gemini_inline_max_mb * 1024 * 1024 else "files"
        progress("waiting_for_account", 0.45)
        if transport == "inline":
            data = await asyncio.to_thread(media.path.read_bytes)
            contents = [self._types.Part.from_bytes(data=data, mime_type=mime), prompt]
            response, _lease = await self._generate(pool, contents, tally, deadline, progress)
        else:
            response = await self._via_files(pool, media, mime, prompt, tally, deadline, progress)
        progress("parsing", 0.85)
        answer, repaired = await self._answer(pool, response, prompt, tally, deadline, progress)
        out = ProviderOutput()
        out.sightings = sightings_from(answer, media.probe.start_s, media.probe.duration_s)
        out.insights["gemini"] = {
            "description": answer.description, "categories": answer.categories, "language": answer.language,
            "key_moments": [m.model_dump() for m in answer.key_moments],
        }
        out.usage = {
            "provider": "gemini", "model": tally.model, "transport": transport,
            "requests": tally.requests, "prompt_tokens": tally.prompt_tokens, "output_tokens": tally.output_tokens,
            "total_tokens": tally.total_tokens, "accounts": tally.accounts, "pool_wait_s": round(tally.waited_s, 3),
            "repaired": repaired,
        }
        out.stage_seconds["gemini"] = time.perf_counter() - t0
        return out

    def _model(self, model: str | None) -> str:
        return model or self.settings.gemini_model

    def _config(self) -> Any:
        t = self._types
        # No automatic function calling: there are no tools, and it only adds SDK chatter.
        return t.GenerateContentConfig(response_mime_type="application/json", response_schema=response_schema(),
                                       temperature=0.2,
                                       automatic_function_calling=t.AutomaticFunctionCallingConfig(disable=True))

    async def _lease(self, pool: AccountPool, deadline: float, progress: Callable[[str, float], Any], *,
                     only: str | None = None) -> Lease:
        def waiting(pause: float) -> None:
            progress("waiting_for_account", 0.45)

        return await pool.acquire_wait(max_wait_s=max(0.0, deadline - time.monotonic()), only=only,
                                       on_wait=waiting)

    async def _generate(self, pool: AccountPool, contents: list[Any], tally: _Tally, deadline: float,
                        progress: Callable[[str, float], Any], *, reserved: Lease | None = None) -> tuple[Any, Lease]:
        """One generateContent, failing over between accounts; raises a VttError when out of tries.

        With `reserved` (a Files API upload's lease) every try stays on that account.
        """
        last: CallFailure | None = None
        only = reserved.account_id if reserved is not None else None
        for _attempt in range(self.settings.gemini_max_attempts):
            try:
                touched = await pool.touch(reserved) if reserved is not None else None
                reserved = None  # one reservation, used once
                lease = touched or await self._lease(pool, deadline, progress, only=only)
            except PoolExhausted as exc:
                if last is not None and last.kind in ("server", "network"):
                    raise error_for(last, exc.retry_after) from None
                raise
            progress("tagging", 0.6)
            try:
                response = await self.client(lease).aio.models.generate_content(
                    model=self._model(lease.model), contents=contents, config=self._config())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = classify_exception(exc, lease.api_key)
                verdict = await pool.report(lease, last)
                log.warning("gemini call on account %s failed: %s", lease.account_id, last.reason)
                if verdict is None or not verdict.retry_other:
                    raise error_for(last) from None
                if only is not None and verdict.action == "deactivate":
                    raise _AccountLost() from None
                continue
            await pool.report(lease, None)
            tally.add(response, lease)
            tally.model = self._model(lease.model)
            return response, lease
        assert last is not None
        raise error_for(last, 60.0 if last.kind.startswith("quota") else None)

    async def _via_files(self, pool: AccountPool, media: MediaInput, mime: str, prompt: str, tally: _Tally,
                         deadline: float, progress: Callable[[str, float], Any]) -> Any:
        """Upload, wait until ACTIVE, generate and delete, all with one account."""
        last: CallFailure | None = None
        for _attempt in range(self.settings.gemini_max_attempts):
            # The generate slot is taken now, so concurrent uploads spread over the accounts.
            owner = await self._lease(pool, deadline, progress)
            client = self.client(owner)
            progress("uploading", 0.5)
            try:
                uploaded = await client.aio.files.upload(
                    file=str(media.path), config=self._types.UploadFileConfig(mime_type=mime))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = classify_exception(exc, owner.api_key)
                verdict = await pool.report(owner, last)
                log.warning("gemini upload on account %s failed: %s", owner.account_id, last.reason)
                if verdict is None or not verdict.retry_other:
                    raise error_for(last) from None
                continue
            try:
                active = await self._wait_active(client, uploaded, owner)
                part = self._types.Part.from_uri(file_uri=active.uri, mime_type=active.mime_type or mime)
                response, _lease = await self._generate(pool, [part, prompt], tally, deadline, progress,
                                                        reserved=owner)
                return response
            except _AccountLost:
                continue
            finally:
                await self._delete(client, uploaded, owner)
        if last is not None:
            raise error_for(last)
        raise ProviderUnavailable("no Gemini account could take the upload")

    async def _wait_active(self, client: Any, uploaded: Any, owner: Lease) -> Any:
        limit = time.monotonic() + self.settings.gemini_file_active_timeout_s
        pause, current = 0.25, uploaded
        while True:
            state = str(getattr(current.state, "value", current.state) or "")
            if state == "ACTIVE":
                return current
            if state == "FAILED":
                raise ProviderRejected("Gemini could not process the uploaded video (file state FAILED)")
            if time.monotonic() >= limit:
                raise ProviderUnavailable(f"the uploaded video was not ACTIVE within "
                                          f"{self.settings.gemini_file_active_timeout_s:.0f} s", retry_after=60.0)
            await asyncio.sleep(pause)
            pause = min(5.0, pause * 1.5)
            try:
                current = await client.aio.files.get(name=uploaded.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = classify_exception(exc, owner.api_key)
                raise error_for(failure) from None

    async def _delete(self, client: Any, uploaded: Any, owner: Lease) -> None:
        """Best effort: Google drops files after 48 h anyway."""
        try:
            await client.aio.files.delete(name=uploaded.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not delete an uploaded file on account %s: %s", owner.account_id,
                        classify_exception(exc, owner.api_key).reason)

    async def _answer(self, pool: AccountPool, response: Any, prompt: str, tally: _Tally, deadline: float,
                      progress: Callable[[str, float], Any]) -> tuple[GeminiAnswer, bool]:
        """Validate the reply; one repair request on malformed output, then ProviderBadOutput."""
        text = _text(response)
        blocked = _block_reason(response)
        if text is None and blocked:
            raise ProviderRejected(f"Gemini blocked the request: {blocked}")
        try:
            return parse_answer(text), False
        except ValueError as exc:
            problem = str(exc)
        log.info("gemini reply malformed (%s); asking once for a repair", problem)
        repair = (f"{prompt}\nYour previous reply was invalid: {problem}.\n"
                  f"Previous reply:\n{(text or '')[:20000]}\n"
                  "Reply again with only the corrected JSON, following the schema exactly.")
        fixed, _lease = await self._generate(pool, [repair], tally, deadline, progress)
        try:
            return parse_answer(_text(fixed)), True
        except ValueError as exc:
            raise ProviderBadOutput(f"Gemini's reply was malformed twice: {exc}") from None


def _text(response: Any) -> str | None:
    try:
        text = response.text
    except Exception:  # the SDK raises on replies without text parts (e.g. safety blocks)
        return None
    return text if isinstance(text, str) else None


def _block_reason(response: Any) -> str | None:
    feedback = getattr(response, "prompt_feedback", None)
    reason = getattr(feedback, "block_reason", None) if feedback is not None else None
    return str(getattr(reason, "value", reason)) if reason else None
