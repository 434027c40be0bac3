"""The project's one error tree.

Third-party errors are translated where they enter (downloader, ffprobe, providers);
everything above only asks `retryable` and `retry_after`. Each error has a stable
`code` (what clients and metrics key on) and a human `message`.

    VttError                      code            retryable  HTTP
    ├── PermanentError                            no
    │   ├── InvalidRequest        invalid_request            400
    │   ├── (unauthorized         unauthorized               401  API key missing/wrong: app/api/auth.py)
    │   ├── (rate_limited         rate_limited               429  per-key limit: app/api/auth.py)
    │   ├── NotFound              not_found                  404
    │   ├── Conflict              conflict                   409
    │   ├── InvalidUrl            invalid_url                400
    │   ├── BlockedAddress        blocked_address            400
    │   ├── TooLarge              too_large                  413
    │   ├── TooLong               too_long                   400
    │   ├── EmptyFile             empty_file                 400
    │   ├── UnsupportedFormat     unsupported_format         415
    │   ├── ProbeFailed           probe_failed               422
    │   ├── DecodeFailed          decode_failed              422
    │   ├── SourceGone            source_gone                410  (HTTP 4xx from origin)
    │   └── ProviderRejected      provider_rejected          422  (the model refused this request, 4xx)
    └── RetryableError                            yes
        ├── DownloadFailed        download_failed            502  (network, 5xx)
        ├── StageTimeout          timeout                    504
        ├── Unavailable           unavailable                503  (DB/Redis/provider down)
        ├── LeaseLost             lease_lost                 503  (the consumer died mid-task; reaped)
        ├── InternalError         internal_error             500  (a bug; retried, then dead-lettered)
        ├── QuotaExhausted        quota_exhausted            429  (provider quota 429s on every try)
        ├── PoolExhausted         pool_exhausted             503  (no account free within the wait bound)
        ├── ProviderUnavailable   provider_unavailable       502  (provider 5xx, network, timeouts)
        └── ProviderBadOutput     provider_bad_output        502  (malformed output, repair failed too)
"""

from __future__ import annotations


class VttError(Exception):
    code = "error"
    http_status = 500
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message})"


class PermanentError(VttError):
    retryable = False


class RetryableError(VttError):
    retryable = True
    http_status = 503


class InvalidRequest(PermanentError):
    code, http_status = "invalid_request", 400


class NotFound(PermanentError):
    code, http_status = "not_found", 404


class Conflict(PermanentError):
    code, http_status = "conflict", 409


class InvalidUrl(PermanentError):
    code, http_status = "invalid_url", 400


class BlockedAddress(PermanentError):
    code, http_status = "blocked_address", 400


class TooLarge(PermanentError):
    code, http_status = "too_large", 413


class TooLong(PermanentError):
    code, http_status = "too_long", 400


class EmptyFile(PermanentError):
    code, http_status = "empty_file", 400


class UnsupportedFormat(PermanentError):
    code, http_status = "unsupported_format", 415


class ProbeFailed(PermanentError):
    code, http_status = "probe_failed", 422


class DecodeFailed(PermanentError):
    code, http_status = "decode_failed", 422


class SourceGone(PermanentError):
    code, http_status = "source_gone", 410


class DownloadFailed(RetryableError):
    code, http_status = "download_failed", 502


class StageTimeout(RetryableError):
    code, http_status = "timeout", 504


class Unavailable(RetryableError):
    code, http_status = "unavailable", 503


class LeaseLost(RetryableError):
    code, http_status = "lease_lost", 503


class InternalError(RetryableError):
    code, http_status = "internal_error", 500


class ProviderRejected(PermanentError):
    code, http_status = "provider_rejected", 422


class QuotaExhausted(RetryableError):
    code, http_status = "quota_exhausted", 429


class PoolExhausted(RetryableError):
    code, http_status = "pool_exhausted", 503


class ProviderUnavailable(RetryableError):
    code, http_status = "provider_unavailable", 502


class ProviderBadOutput(RetryableError):
    code, http_status = "provider_bad_output", 502


_ALL: tuple[type[VttError], ...] = (
    InvalidRequest, NotFound, Conflict, InvalidUrl, BlockedAddress, TooLarge, TooLong,
    EmptyFile, UnsupportedFormat, ProbeFailed, DecodeFailed, SourceGone, DownloadFailed,
    StageTimeout, Unavailable, LeaseLost, InternalError, ProviderRejected, QuotaExhausted, PoolExhausted,
    ProviderUnavailable, ProviderBadOutput,
)
ERROR_CODES: frozenset[str] = frozenset(cls.code for cls in _ALL)


def http_status_for(code: str) -> int:
    """The HTTP status that goes with a stored error code (500 for an unknown one)."""
    return next((cls.http_status for cls in _ALL if cls.code == code), 500)
