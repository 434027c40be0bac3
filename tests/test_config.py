import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = {m.lower() for m in re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M)}
    assert set(Settings.model_fields) - documented == set()
    Settings(_env_file=ROOT / ".env.example")  # and the example itself is valid


def test_defaults_are_the_embedded_mode() -> None:
    s = Settings(_env_file=None)
    assert s.embedded and (s.host, s.port, s.max_video_mb, s.tagger) == ("127.0.0.1", 8000, 50, "local")
    assert s.effective_database_url.startswith("sqlite:///") and s.download_allowed_hosts == []


@pytest.mark.parametrize("env,word", [
    ({"database_url": "mysql://x/y"}, "REDIS_URL"), ({"redis_url": "redis://x"}, "DATABASE_URL"),
    ({"download_allowed_hosts": "10.0.0.0/33"}, "download_allowed_hosts"),
    ({"download_allowed_hosts": "evil.com:80"}, "download_allowed_hosts"),
    ({"port": 0}, "port"), ({"max_video_mb": 0}, "max_video_mb"), ({"tagger": "magic"}, "tagger"),
])
def test_unsafe_or_inconsistent_values_are_refused(env: dict, word: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, **env)
    assert word in str(info.value)


def test_allowed_hosts_split_into_names_and_networks() -> None:
    s = Settings(_env_file=None, download_allowed_hosts="Media.Internal, 10.20.0.0/16,127.0.0.1")
    assert s.allowed_hostnames == {"media.internal", "127.0.0.1"}
    assert [str(n) for n in s.allowed_networks] == ["10.20.0.0/16"]
