"""A loopback server that speaks Gemini's REST wire protocol, for the real google-genai SDK.

Routes (both /v1 and /v1beta, see ../shared/WIRE.md):
    POST   /{v}/models/{model}:generateContent      inline bytes or a fileData uri
    POST   /upload/{v}/files                         resumable start -> absolute X-Goog-Upload-URL
    POST   /upload-session/{sid}                     `upload` / `upload, finalize` chunks (no key)
    GET    /{v}/files/{id}                           PROCESSING for `processing_polls` gets, then ACTIVE
    DELETE /{v}/files/{id}

Quotas are enforced the way Google counts them: per Google Cloud project (keys of one
project share it), requests per minute over a sliding 60 s window and requests per
Pacific day. A request over a quota gets the real 429 body (QuotaFailure + RetryInfo)
and is counted as a *violation*: a pool that works never causes one.

Per-key scripts: `script(key, "403", "500", ...)` queues one-shot actions for the next
generateContent calls of that key; `default(key, action)` sets what happens after.
Actions: ok | 401 | 403 | 400key | 400 | 500 | 503 | 429minute[:secs] | 429day | 429bare |
slow:secs | malformed | notjson.
Uploaded files belong to the uploading key's project; another project's key gets 403, and
such a cross-project use is counted in `file_mismatches` (the provider must keep one account).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from tests.loopback import serve

PACIFIC = ZoneInfo("America/Los_Angeles")
WINDOW_S = 60.0
VERSIONS = ("v1", "v1beta")

GOOD_ANSWER: dict[str, Any] = {
    "tags": [{"name": "cat", "confidence": 0.93}, {"name": "sofa", "confidence": 0.71}, {"name": "indoor"}],
    "description": "A cat sleeps on a sofa, then stretches.",
    "categories": ["animals", "pets"],
    "language": "none",
    "key_moments": [
        {"start_s": 0.0, "end_s": 1.5, "description": "the cat sleeps", "tags": ["cat", "sofa"]},
        {"start_s": 1.5, "end_s": 2.5, "description": "it stretches", "tags": ["cat"]},
    ],
}


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def pacific_day(t: float) -> str:
    return dt.datetime.fromtimestamp(t, PACIFIC).date().isoformat()


@dataclass
class Project:
    name: str
    rpm: int
    rpd: int
    accepted: deque[float] = field(default_factory=deque)   # accepted request times in the last 60 s
    daily: dict[str, int] = field(default_factory=dict)       # Pacific day -> accepted requests
    minute_violations: int = 0
    day_violations: int = 0
    max_in_window: int = 0


@dataclass
class Key:
    project: Project
    script: deque[str] = field(default_factory=deque)
    default: str = "ok"
    requests: int = 0
    served: int = 0


@dataclass
class StoredFile:
    id: str
    project: str
    mime: str
    data: bytearray
    polls: int = 0
    state: str = "PROCESSING"


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "status": status}}
    if details is not None:
        body["error"]["details"] = details
    return web.json_response(body, status=code)


def quota_429(quota_id: str, retry_s: float) -> web.Response:
    """The body Google sends when a quota is exceeded (see WIRE.md)."""
    return _error(429, "RESOURCE_EXHAUSTED",
                  "You exceeded your current quota, please check your plan and billing details.", [
                      {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                       "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                       "quotaId": quota_id, "quotaDimensions": {"location": "global"}}]},
                      {"@type": "type.googleapis.com/google.rpc.Help",
                       "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                      {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{max(0, int(retry_s))}s"},
                  ])


class GeminiServer:
    def __init__(self, *, processing_polls: int = 1, answer: dict[str, Any] | None = None) -> None:
        self.keys: dict[str, Key] = {}
        self.projects: dict[str, Project] = {}
        self.files: dict[str, StoredFile] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.processing_polls = processing_polls
        self.answer = answer or GOOD_ANSWER
        self.log: list[dict[str, Any]] = []          # one entry per generateContent
        self.file_mismatches = 0
        self.uploads = 0
        self.deleted: list[str] = []
        self.port = 0
        self.runner: web.AppRunner | None = None

    # --- set-up ----------------------------------------------------------------------
    def add_key(self, key: str, *, rpm: int, rpd: int, project: str | None = None) -> None:
        """Register a key; keys naming the same project share its quota (the smallest limits)."""
        name = project or "solo-" + fingerprint(key)
        proj = self.projects.get(name)
        if proj is None:
            proj = self.projects[name] = Project(name, rpm, rpd)
        else:
            proj.rpm, proj.rpd = min(proj.rpm, rpm), min(proj.rpd, rpd)
        self.keys[key] = Key(proj)

    def script(self, key: str, *actions: str) -> None:
        self.keys[key].script.extend(actions)

    def default(self, key: str, action: str) -> None:
        self.keys[key].default = action

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def violations(self) -> int:
        return sum(p.minute_violations + p.day_violations for p in self.projects.values())

    def served(self) -> int:
        return sum(k.served for k in self.keys.values())

    def served_by(self, key: str) -> int:
        return self.keys[key].served

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for v in VERSIONS:
            app.router.add_post(f"/{v}/models/{{call}}", self.generate)
            app.router.add_post(f"/upload/{v}/files", self.upload_start)
            app.router.add_get(f"/{v}/files/{{fid}}", self.file_get)
            app.router.add_delete(f"/{v}/files/{{fid}}", self.file_delete)
        app.router.add_post("/upload-session/{sid}", self.upload_chunk)
        self.runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # --- helpers ---------------------------------------------------------------------
    def _key(self, request: web.Request) -> tuple[str, Key | None]:
        key = request.headers.get("x-goog-api-key") or request.query.get("key") or ""
        return key, self.keys.get(key)

    @staticmethod
    def _invalid_key() -> web.Response:
        return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])

    def _admit(self, proj: Project, now: float) -> web.Response | None:
        """Google's quota check: None = admitted (and counted); else the 429 (a violation)."""
        while proj.accepted and proj.accepted[0] <= now - WINDOW_S:
            proj.accepted.popleft()
        day = pacific_day(now)
        if proj.daily.get(day, 0) >= proj.rpd:
            proj.day_violations += 1
            return quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 3600)
        if len(proj.accepted) >= proj.rpm:
            proj.minute_violations += 1
            return quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                             proj.accepted[0] + WINDOW_S - now + 1)
        proj.accepted.append(now)
        proj.max_in_window = max(proj.max_in_window, len(proj.accepted))
        proj.daily[day] = proj.daily.get(day, 0) + 1
        return None

    # --- generateContent -------------------------------------------------------------
    async def generate(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        call = request.match_info["call"]
        model, _, method = call.partition(":")
        if method != "generateContent":
            return _error(404, "NOT_FOUND", f"method {method} not found")
        raw_key, key = self._key(request)
        entry: dict[str, Any] = {"t": now, "key": fingerprint(raw_key), "model": model, "status": 0,
                                 "path": request.path}
        self.log.append(entry)
        body = await request.json()
        if key is None:
            entry["status"] = 400
            return self._invalid_key()
        key.requests += 1
        action = key.script.popleft() if key.script else key.default
        entry["action"] = action
        entry["project"] = key.project.name
        if action in ("401", "403", "400key"):
            entry["status"] = int(action[:3])
            if action == "401":
                return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
            if action == "400key":
                return self._invalid_key()
            # Google really does echo the key in this message: the provider must scrub it.
            return _error(403, "PERMISSION_DENIED", f"Permission denied: Consumer 'api_key:{raw_key}' has been "
                          "suspended.", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                          "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com"}])
        if action.startswith("429"):  # someone else spent this quota: scripted, not a violation
            entry["status"] = 429
            if action.startswith("429minute"):
                secs = float(action.split(":")[1]) if ":" in action else 30
                return quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", secs)
            if action == "429day":
                return quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 3600)
            return _error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
        refused = self._admit(key.project, now)
        if refused is not None:
            entry["status"] = 429
            entry["violation"] = True
            return refused
        if action.startswith("slow:"):
            await asyncio.sleep(float(action.split(":")[1]))
        if action in ("500", "503"):
            entry["status"] = int(action)
            return _error(int(action), "INTERNAL" if action == "500" else "UNAVAILABLE",
                          "An internal error has occurred." if action == "500" else "The model is overloaded.")
        if action == "400":
            entry["status"] = 400
            return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        problem = self._check_parts(body, key, entry)
        if problem is not None:
            return problem
        entry["status"] = 200
        key.served += 1
        if action == "malformed":
            text = '```json\n{"tags": [{"name": "cat", "confidence": "very"}], "description": '
        elif action == "notjson":
            text = "I cannot describe this video."
        else:
            text = json.dumps(self.answer)
        return web.json_response({
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": 1200, "candidatesTokenCount": 85, "totalTokenCount": 1285},
            "modelVersion": model,
        })

    def _check_parts(self, body: dict[str, Any], key: Key, entry: dict[str, Any]) -> web.Response | None:
        for content in body.get("contents", []):
            for part in content.get("parts", []):
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    data = base64.urlsafe_b64decode(inline["data"])
                    entry["inline_bytes"] = len(data)
                fdata = part.get("fileData") or part.get("file_data")
                if fdata:
                    uri = fdata.get("fileUri") or fdata.get("file_uri") or ""
                    stored = self.files.get(uri.rsplit("/", 1)[-1])
                    entry["file"] = uri
                    if stored is None:
                        entry["status"] = 400
                        return _error(400, "INVALID_ARGUMENT", "File not found.")
                    if stored.project != key.project.name:
                        self.file_mismatches += 1
                        entry["status"] = 403
                        return _error(403, "PERMISSION_DENIED",
                                      "You do not have permission to access the File or it may not exist.")
                    if stored.state != "ACTIVE":
                        entry["status"] = 400
                        return _error(400, "FAILED_PRECONDITION", "The file is not in an ACTIVE state.")
        return None

    # --- Files API -------------------------------------------------------------------
    async def upload_start(self, request: web.Request) -> web.StreamResponse:
        _raw, key = self._key(request)
        if key is None:
            return self._invalid_key()
        if request.headers.get("X-Goog-Upload-Protocol") != "resumable" or \
                request.headers.get("X-Goog-Upload-Command") != "start":
            return _error(400, "INVALID_ARGUMENT", "expected a resumable upload start")
        meta = await request.json()
        sid = uuid.uuid4().hex
        self.sessions[sid] = {"project": key.project.name, "data": bytearray(),
                              "size": int(request.headers.get("X-Goog-Upload-Header-Content-Length", "0")),
                              "mime": request.headers.get("X-Goog-Upload-Header-Content-Type")
                              or meta.get("file", {}).get("mimeType", "application/octet-stream")}
        return web.json_response({}, headers={"X-Goog-Upload-URL": f"{self.base_url}/upload-session/{sid}",
                                              "X-Goog-Upload-Status": "active"})

    async def upload_chunk(self, request: web.Request) -> web.StreamResponse:
        sess = self.sessions.get(request.match_info["sid"])
        if sess is None:
            return _error(404, "NOT_FOUND", "no such upload session")
        command = request.headers.get("X-Goog-Upload-Command", "")
        offset = int(request.headers.get("X-Goog-Upload-Offset", "0"))
        if offset != len(sess["data"]):
            return _error(400, "INVALID_ARGUMENT", "offset mismatch")
        sess["data"].extend(await request.read())
        if "finalize" not in command:
            return web.json_response({}, headers={"X-Goog-Upload-Status": "active"})
        self.sessions.pop(request.match_info["sid"])
        fid = uuid.uuid4().hex[:12]
        self.files[fid] = StoredFile(fid, sess["project"], sess["mime"], sess["data"])
        self.uploads += 1
        return web.json_response({"file": self._file_json(self.files[fid])}, headers={"X-Goog-Upload-Status": "final"})

    def _file_json(self, f: StoredFile) -> dict[str, Any]:
        return {"name": f"files/{f.id}", "mimeType": f.mime, "sizeBytes": str(len(f.data)),
                "uri": f"{self.base_url}/v1beta/files/{f.id}", "state": f.state,
                "createTime": "2025-01-01T00:00:00Z", "expirationTime": "2025-01-03T00:00:00Z"}

    def _own_file(self, request: web.Request) -> tuple[StoredFile | None, web.Response | None]:
        _raw, key = self._key(request)
        if key is None:
            return None, self._invalid_key()
        f = self.files.get(request.match_info["fid"])
        if f is None:
            return None, _error(404, "NOT_FOUND", "File not found.")
        if f.project != key.project.name:
            self.file_mismatches += 1
            return None, _error(403, "PERMISSION_DENIED",
                                "You do not have permission to access the File or it may not exist.")
        return f, None

    async def file_get(self, request: web.Request) -> web.StreamResponse:
        f, err = self._own_file(request)
        if err is not None or f is None:
            return err or _error(404, "NOT_FOUND", "File not found.")
        f.polls += 1
        if f.state == "PROCESSING" and f.polls > self.processing_polls:
            f.state = "ACTIVE"
        return web.json_response(self._file_json(f))

    async def file_delete(self, request: web.Request) -> web.StreamResponse:
        f, err = self._own_file(request)
        if err is not None or f is None:
            return err or _error(404, "NOT_FOUND", "File not found.")
        del self.files[f.id]
        self.deleted.append(f.id)
        return web.json_response({})
