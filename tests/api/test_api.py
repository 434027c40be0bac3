"""API contract: envelope, validation naming the field, stable error codes, upload limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MYSQL_URL, make_settings
from tests.e2e.harness import Service, running_service


@pytest.fixture
async def api(tmp_path: Path, redis_url: str, mysql_store, model_dir: Path):
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url, model_dir=model_dir, max_video_mb=1)
    async with running_service(settings, consumers=0) as svc:
        yield svc


@pytest.mark.parametrize("body,status,field", [
    ({"platform": "rpa"}, 400, "url"),
    ({"url": "http://example.com/v.mp4"}, 400, "platform"),
    ({"url": "http://example.com/v.mp4", "platform": "rpa", "dimensions": "smell"}, 400, "dimensions"),
    ({"url": "http://example.com/v.mp4", "platform": "rpa", "uid": "abc"}, 400, "uid"),
    ({"url": "http://example.com/v.mp4", "platform": "rpa", "surprise": 1}, 400, "surprise"),
    ({"url": "", "platform": "rpa"}, 400, "url"),
])
async def test_validation_names_the_field(api: Service, body: dict, status: int, field: str) -> None:
    r = await api.client.post("/api/v1/task/create", json=body)
    assert r.status_code == status
    j = r.json()
    assert j["code"] == status and field in j["message"] and j["task_id"] is None
    assert j["data"]["error"]["code"] == "invalid_request"


async def test_malformed_json_is_a_400(api: Service) -> None:
    r = await api.client.post("/api/v1/task/create", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 400


@pytest.mark.parametrize("url,code", [
    ("http://127.0.0.2/v.mp4", "blocked_address"), ("http://169.254.169.254/latest/meta-data/", "blocked_address"),
    ("http://[::1]/v.mp4", "blocked_address"), ("http://[fd00::1]/v.mp4", "blocked_address"),
    ("file:///etc/passwd", "invalid_url"), ("gopher://example.com/", "invalid_url"),
])
async def test_bad_urls_are_refused_at_once(api: Service, url: str, code: str) -> None:
    r = await api.client.post("/api/v1/task/create", json={"url": url, "platform": "rpa"})
    assert r.status_code == 400 and r.json()["data"]["error"]["code"] == code
    assert (await api.client.get("/api/v1/tasks")).json()["data"]["total"] == 0  # nothing was accepted


async def test_seed_spelling_and_envelope(api: Service) -> None:
    r = await api.client.post("/api/v1/task/create", json={"url": "https://example.com/v.mp4", "platform": "rpa",
                                                           "dismensions": "audio", "uid": 5, "env": "prod"})
    j = r.json()
    assert r.status_code == 200 and j["code"] == 200 and j["message"] == "success" and len(j["task_id"]) == 32
    task = (await api.client.get(f"/api/v1/task/{j['task_id']}")).json()["data"]
    assert (task["status"], task["dimensions"], task["uid"], task["env"]) == ("pending", "audio", 5, "prod")
    assert task["result"] is None and task["error"] is None


@pytest.mark.parametrize("path", ["/api/v1/task/" + "0" * 32, "/api/v1/task/../../etc", "/api/v1/task/zz", "/nope"])
async def test_not_found_is_an_envelope(api: Service, path: str) -> None:
    r = await api.client.get(path)
    assert r.status_code == 404 and r.json()["code"] == 404 and r.json()["data"]["error"]["code"] == "not_found"


async def test_upload_limits_and_content(api: Service, corpus: Path) -> None:
    uploads = api.settings.data_dir / "uploads"
    big = (corpus / "real/big_buck_bunny_0_30_moviepy.webm").read_bytes()  # 1.3 MB > the 1 MB limit here
    r = await api.client.post("/api/v1/task/upload", files={"file": ("a.webm", big)}, data={"platform": "p"})
    assert r.status_code == 413 and r.json()["data"]["error"]["code"] == "too_large"

    async def chunked():  # no Content-Length: the limit is enforced while streaming
        boundary = b"XyZ"
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"platform\"\r\n\r\np\r\n"
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.webm\"\r\n\r\n"
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n--" + boundary + b"--\r\n"

    r = await api.client.post("/api/v1/task/upload", content=chunked(),
                              headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 413
    r = await api.client.post("/api/v1/task/upload", files={"file": ("x.mp4", b"hello, not a video" * 300)},
                              data={"platform": "p"})
    assert r.status_code == 415 and r.json()["data"]["error"]["code"] == "unsupported_format"
    r = await api.client.post("/api/v1/task/upload", files={"file": ("x.mp4", b"")}, data={"platform": "p"})
    assert r.status_code == 400 and r.json()["data"]["error"]["code"] == "empty_file"
    small = (corpus / "containers/bbb_clip.mp4").read_bytes()
    r = await api.client.post("/api/v1/task/upload", files={"file": ("x.mp4", small)}, data={"dimensions": "all"})
    assert r.status_code == 400 and "platform" in r.json()["message"]
    r = await api.client.post("/api/v1/task/upload", data={"platform": "p"})
    assert r.status_code == 400 and "file" in r.json()["message"]
    assert list(uploads.glob("*")) == []  # refused uploads leave nothing behind
    r = await api.client.post("/api/v1/task/upload", files={"file": ("x.mp4", small)}, data={"platform": "p"})
    assert r.status_code == 200 and (uploads / r.json()["task_id"]).stat().st_size == len(small)


async def test_health_and_docs(api: Service) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await api.client.get("/readyz")).json()
    assert ready["data"]["checks"] == {"database": "ok", "redis": "ok"}
    spec = (await api.client.get("/openapi.json")).json()
    assert {"/api/v1/task/create", "/api/v1/task/upload", "/api/v1/task/{task_id}", "/api/v1/tasks",
            "/api/v1/vision_to_tag/google"} <= set(spec["paths"])


async def test_list_pagination_bounds(api: Service) -> None:
    for i in range(3):
        await api.client.post("/api/v1/task/create", json={"url": f"https://example.com/{i}.mp4", "platform": "pg"})
    page = (await api.client.get("/api/v1/tasks", params={"page_size": 2, "page": 2})).json()["data"]
    assert page["total"] == 3 and len(page["items"]) == 1
    r = await api.client.get("/api/v1/tasks", params={"page_size": 1000})
    assert r.status_code == 400 and "page_size" in r.json()["message"]
    r = await api.client.get("/api/v1/tasks", params={"status": "weird"})
    assert r.status_code == 400 and "status" in r.json()["message"]
