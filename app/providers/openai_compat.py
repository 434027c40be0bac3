"""The OpenAI-compatible provider (`TAGGER=openai`): any chat-completions server with image inputs.

Qwen-VL through DashScope's compatible mode, a local vLLM or Ollama, OpenAI itself: the
official `openai` client, sampled frames sent as base64 JPEG data URLs, the answer asked
for as JSON-schema structured output (OPENAI_RESPONSE_FORMAT=json_object for servers that
only know JSON mode, e.g. DeepSeek), parsed with the Gemini answer model.

Keys come from the same Redis account pool as Gemini's (import_accounts.py; an account's
`model` overrides OPENAI_MODEL), with the same per-minute / per-day limits, cooldowns and
failover: every call is `AccountPool.acquire_wait` first and `report` after. Errors are
translated here: a 429 becomes a quota cooldown (Retry-After / x-ratelimit-reset-requests
give its length; `insufficient_quota` parks the account for the day), 401/403 deactivate
the key, 5xx and transport errors back the account off and retry on another.

The answer's description, categories and key moments go in the result's "gemini" section
(the pipeline's slot for an LLM's answer), with "provider": "openai".
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app.accounts import AccountPool, CallFailure, Lease
from app.config import Settings
from app.errors import PoolExhausted, ProviderBadOutput, ProviderRejected, VttError
from app.providers.base import MediaInput, ProviderOutput
from app.providers.gemini import MAX_TAGS, GeminiAnswer, parse_answer, scrub, sightings_from
from app.providers.pooled import PooledProvider, Tally, final_error

log = logging.getLogger("openai")

JPEG_QUALITY = 85
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")

PROMPT = (
    "You tag videos for a search index. You are shown {n} frames sampled from one video, in order, at "
    "these times (seconds from the start): {times}. Reply with JSON only:\n"
    "- tags: up to {max_tags} short, lowercase names of what is shown (objects, animals, people's roles, "
    "places, actions, on-screen text topics), each with a confidence between 0 and 1;\n"
    "- description: one to three plain sentences about the whole video;\n"
    "- categories: a few broad topics (e.g. sports, cooking, music);\n"
    "- language: the BCP-47 code of the language of on-screen text, or \"none\";\n"
    "- key_moments: the notable moments, each with start_s and end_s in seconds from the start of the "
    "video, a short description and the tags that apply to it.\n"
)
FOCUS = {"text": "Consider only text shown on screen.", "vision": "Consider only what is visible."}

TOPICS_PROMPT = (
    "These are groups of videos from one collection; each group lists its frequent terms and a few of its "
    "videos' descriptions. For every group give a topic name of 5 to 10 characters (a short noun phrase) "
    "and a one-sentence summary of the theme. Reply with JSON only: "
    "{\"topics\": [{\"cluster\": <group number>, \"name\": ..., \"summary\": ...}]}.\n\n"
)


# --- the wire (pure) --------------------------------------------------------------------
def answer_schema() -> dict[str, Any]:
    """The JSON schema of the tagging answer, strict-mode shaped (every property required)."""
    string, number = {"type": "string"}, {"type": "number"}
    tag = {"type": "object", "additionalProperties": False, "required": ["name", "confidence"],
           "properties": {"name": string, "confidence": number}}
    moment = {"type": "object", "additionalProperties": False,
              "required": ["start_s", "end_s", "description", "tags"],
              "properties": {"start_s": number, "end_s": number, "description": string,
                             "tags": {"type": "array", "items": string}}}
    return {"type": "object", "additionalProperties": False,
            "required": ["tags", "description", "categories", "language", "key_moments"],
            "properties": {"tags": {"type": "array", "items": tag}, "description": string,
                           "categories": {"type": "array", "items": string}, "language": string,
                           "key_moments": {"type": "array", "items": moment}}}


def topics_schema() -> dict[str, Any]:
    item = {"type": "object", "additionalProperties": False, "required": ["cluster", "name", "summary"],
            "properties": {"cluster": {"type": "integer"}, "name": {"type": "string"},
                           "summary": {"type": "string"}}}
    return {"type": "object", "additionalProperties": False, "required": ["topics"],
            "properties": {"topics": {"type": "array", "items": item}}}


def response_format(mode: str, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` request field: strict JSON schema, or plain JSON mode."""
    if mode == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}


def pick_frames(count: int, limit: int) -> list[int]:
    """Indexes of at most `limit` frames spread evenly over `count` (pure; first and last kept)."""
    if count <= 0 or limit <= 0:
        return []
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [count // 2]
    return sorted({round(k * (count - 1) / (limit - 1)) for k in range(limit)})


def jpeg_data_url(image: Any, quality: int = JPEG_QUALITY) -> str:
    """An RGB uint8 array -> `data:image/jpeg;base64,...`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def parse_duration_s(value: str | None) -> float | None:
    """`Retry-After` / `x-ratelimit-reset-requests` -> seconds: "7", "1.5", "20ms", "6m0s", "1h2m"."""
    if value is None:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    parts = _DURATION_RE.findall(v)
    if not parts or "".join(a + b for a, b in parts) != v.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(a) * scale[b] for a, b in parts)


def classify_status(code: int, headers: dict[str, str], body: Any, api_key: str | None = None) -> CallFailure:
    """An error reply of a chat-completions server -> the pool's CallFailure (pure).

    `headers` with lower-case names. `body` is the parsed JSON (or anything else).
    """
    err = body.get("error", body) if isinstance(body, dict) else {}
    err = err if isinstance(err, dict) else {}
    message = scrub(str(err.get("message") or ""), api_key)[:200]
    err_code = str(err.get("code") or err.get("type") or "")
    reason = f"{code} {err_code}: {message}".strip()
    lowered = f"{err_code} {message}".lower()
    if code == 429:
        if "insufficient_quota" in lowered or "per day" in lowered or "daily" in lowered:
            return CallFailure("quota_day", reason)
        delay = parse_duration_s(headers.get("retry-after"))
        if delay is None:
            delay = parse_duration_s(headers.get("x-ratelimit-reset-requests"))
        if delay is not None or "per minute" in lowered or "rpm" in lowered:
            return CallFailure("quota_minute", reason, delay)
        return CallFailure("quota", reason)
    if code in (401, 403):
        return CallFailure("auth", reason)
    if code == 400 and ("invalid_api_key" in lowered or "api key" in lowered):
        return CallFailure("auth", reason)
    if code in (408, 409) or code >= 500:
        return CallFailure("server", reason)
    return CallFailure("rejected", reason)


def classify_exception(exc: BaseException, api_key: str | None = None) -> CallFailure:
    """Any exception from the `openai` client -> CallFailure."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        try:
            body = exc.response.json()
        except Exception:
            body = exc.body
        headers = {k.lower(): v for k, v in exc.response.headers.items()}
        return classify_status(exc.status_code, headers, body, api_key)
    if isinstance(exc, (openai.APITimeoutError, TimeoutError, asyncio.TimeoutError)):
        return CallFailure("network", "timeout: no reply within OPENAI_TIMEOUT_S")
    return CallFailure("network", f"{type(exc).__name__}: {scrub(str(exc), api_key)[:200]}")


def error_for(failure: CallFailure, retry_after: float | None = None) -> VttError:
    return final_error(failure, "the model server", retry_after)


class TopicName(BaseModel):
    cluster: int
    name: str = Field(min_length=1, max_length=64)
    summary: str = ""


class TopicNames(BaseModel):
    topics: list[TopicName]


def parse_topics(text: str | None) -> list[TopicName]:
    """The model's topic reply -> names (pure). Raises ValueError."""
    body = (text or "").strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        return TopicNames.model_validate(json.loads(body)).topics
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ValueError(f"topic reply is not valid: {str(exc)[:200]}") from None


# --- the provider -------------------------------------------------------------------------
class _Tally(Tally):
    def add(self, response: Any, lease: Lease, model: str) -> None:
        u = getattr(response, "usage", None)
        self.record(lease, int(getattr(u, "prompt_tokens", 0) or 0), int(getattr(u, "completion_tokens", 0) or 0),
                    int(getattr(u, "total_tokens", 0) or 0), model=model)


class OpenAIProvider(PooledProvider):
    name = "openai"

    def __init__(self, settings: Settings, *, pool: AccountPool | None = None,
                 sessions: sessionmaker[Session] | None = None) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - requirements.txt pins it
            raise RuntimeError("the openai tagger needs the openai package: pip install openai") from exc
        self._openai = openai
        super().__init__(settings, pool=pool, sessions=sessions)

    def _make_client(self, lease: Lease) -> Any:
        # max_retries=0: we retry, on another account, after telling the pool.
        return self._openai.AsyncOpenAI(api_key=lease.api_key, base_url=self.settings.openai_base_url,
                                        timeout=self.settings.openai_timeout_s, max_retries=0)

    async def _close_client(self, client: Any) -> None:
        await client.close()

    # -- calls --
    async def chat(self, messages: list[dict[str, Any]], fmt: dict[str, Any], tally: _Tally,
                   progress: Callable[[str, float], Any] | None = None) -> str | None:
        """One chat completion over the pool, failing over between accounts; the reply's text."""
        pool = await self.pool()
        deadline = time.monotonic() + self.settings.openai_pool_wait_s
        last: CallFailure | None = None
        for _attempt in range(self.settings.openai_max_attempts):
            try:
                lease = await pool.acquire_wait(max_wait_s=max(0.0, deadline - time.monotonic()))
            except PoolExhausted as exc:
                if last is not None and last.kind in ("server", "network"):
                    raise error_for(last, exc.retry_after) from None
                raise
            if progress is not None:
                progress("tagging", 0.6)
            model = lease.model or self.settings.openai_model
            try:
                response = await self.client(lease).chat.completions.create(
                    model=model, messages=messages, response_format=fmt, temperature=0.2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = classify_exception(exc, lease.api_key)
                verdict = await pool.report(lease, last)
                log.warning("openai call on account %s failed: %s", lease.account_id, last.reason)
                if verdict is None or not verdict.retry_other:
                    raise error_for(last) from None
                continue
            await pool.report(lease, None)
            tally.add(response, lease, model)
            choices = getattr(response, "choices", None) or []
            if not choices:
                return None
            content = choices[0].message.content
            return content if isinstance(content, str) else None
        assert last is not None
        raise error_for(last, 60.0 if last.kind.startswith("quota") else None)

    async def analyse(self, media: MediaInput, progress: Callable[[str, float], Any]) -> ProviderOutput:
        t0 = time.perf_counter()
        frames = media.frames.frames
        chosen = [frames[i] for i in pick_frames(len(frames), self.settings.openai_max_images)]
        if not chosen:
            raise ProviderRejected("no frames could be sampled from the video to send to the model")
        urls = await asyncio.to_thread(lambda: [jpeg_data_url(f.image) for f in chosen])
        times = ", ".join(f"{f.time_s:.1f}" for f in chosen)
        prompt = PROMPT.format(n=len(chosen), times=times, max_tags=MAX_TAGS) + FOCUS.get(media.dimensions, "")
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        content += [{"type": "image_url", "image_url": {"url": u, "detail": self.settings.openai_image_detail}}
                    for u in urls]
        messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
        fmt = response_format(self.settings.openai_response_format, "video_tags", answer_schema())
        tally = _Tally()
        progress("waiting_for_account", 0.45)
        text = await self.chat(messages, fmt, tally, progress)
        progress("parsing", 0.85)
        repaired = False
        try:
            answer = parse_answer(text)
        except ValueError as exc:
            log.info("model reply malformed (%s); asking once for a repair", exc)
            repair: list[dict[str, Any]] = [*messages, {"role": "assistant", "content": (text or "")[:20000]},
                      {"role": "user", "content": f"Your reply was invalid: {exc}. Reply again with only the "
                                                  "corrected JSON, following the schema exactly."}]
            fixed = await self.chat(repair, fmt, tally, progress)
            try:
                answer, repaired = parse_answer(fixed), True
            except ValueError as exc2:
                raise ProviderBadOutput(f"the model's reply was malformed twice: {exc2}") from None
        return self._output(answer, media, tally, len(chosen), repaired, time.perf_counter() - t0)

    def _output(self, answer: GeminiAnswer, media: MediaInput, tally: _Tally, images: int, repaired: bool,
                seconds: float) -> ProviderOutput:
        out = ProviderOutput()
        out.sightings = [dataclasses.replace(s, source="openai")
                         for s in sightings_from(answer, media.probe.start_s, media.probe.duration_s)]
        out.insights["gemini"] = {
            "provider": "openai", "description": answer.description, "categories": answer.categories,
            "language": answer.language, "key_moments": [m.model_dump() for m in answer.key_moments],
        }
        out.usage = {
            "provider": "openai", "model": tally.model, "images": images, "requests": tally.requests,
            "prompt_tokens": tally.prompt_tokens, "output_tokens": tally.output_tokens,
            "total_tokens": tally.total_tokens, "accounts": tally.accounts,
            "pool_wait_s": round(tally.waited_s, 3), "repaired": repaired,
        }
        out.stage_seconds["openai"] = seconds
        return out

    async def name_topics(self, groups: Sequence[dict[str, Any]]) -> list[TopicName]:
        """Ask the model to name and summarise clusters: `groups` = [{"cluster", "terms", "samples"}]."""
        lines = []
        for g in groups:
            samples = "; ".join(s[:300] for s in g.get("samples", [])[:3])
            lines.append(f"Group {g['cluster']}: terms: {', '.join(g.get('terms', [])[:12])}. Videos: {samples}")
        messages = [{"role": "user", "content": TOPICS_PROMPT + "\n".join(lines)}]
        fmt = response_format(self.settings.openai_response_format, "collection_topics", topics_schema())
        text = await self.chat(messages, fmt, _Tally())
        try:
            return parse_topics(text)
        except ValueError as exc:
            raise ProviderBadOutput(str(exc)) from None
