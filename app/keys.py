"""Every Redis key the service uses, and nothing else spells one.

    key                               type    owner            TTL / why
    task_queue                        List    API -> consumer  none; ids waiting to run (LPUSH in, BLMOVE out)
    task_queue_processing:{worker}    List    consumer         none; ids a worker has claimed (reliable-queue)
    task_queue_lock:{task_id}         String  consumer         task_lease_s (seed: 5 min); value = worker id,
                                                               renewed while the task runs; absence = lease lost
    task_info:{task_id}               Hash    API, consumer    task_info_ttl_s (seed: 7 days); url, status,
                                                               stage, progress, retry_count, created_at, ...
    task_queue_failed                 List    consumer         none; dead letters (task ids), newest first
    task_queue_delayed                ZSet    consumer         none; task id -> due time (unix s) of a retry
    consumers                         ZSet    consumer         none; worker id -> last heartbeat (unix s)
    task_queue_cancel:{task_id}       String  API -> consumer  task_info_ttl_s; an operator cancelled a running task
    task_queue_reconcile_lock         String  consumer         reconcile interval; one consumer reconciles
                                                               SQL against Redis at a time (NX + EX)
    google_accounts:keys              Set     import, pool     none; account ids in the Gemini pool
    google_accounts:{id}:info         Hash    import, pool     none; api_key, masked, project, group, model, limits,
                                                               status, cooldown_until, last_used, last_error, ...
    google_accounts:{id}:daily        Hash    pool             2 days; Pacific quota day (YYYY-MM-DD) -> requests
    google_accounts:{id}:minute_window ZSet   pool             2 min; one member per request, score = time (unix s)
    google_accounts:import_lock       String  import           NX + expiry; holder token; serialises imports
    google_projects:{group}:daily     Hash    pool             2 days; as :daily, summed over a project's accounts
    google_projects:{group}:minute_window ZSet pool            2 min; as :minute_window, for a whole project
    api_rate:{key_id}:{window}        String  API              window + 5 s; requests of one client key in one
                                                               fixed window (app/api/auth.py); window = unix s // 60

Task ids are server-made hex uuids, so no user text ever reaches a key name. Account ids
are the first 12 hex digits of sha256(api key) and project groups the same digest of
the project name: no secret and no user text reaches a key name either. The pool's Lua
scripts build the per-account and per-project names from the prefixes and suffixes below.
"""

from __future__ import annotations

TASK_QUEUE = "task_queue"
TASK_QUEUE_FAILED = "task_queue_failed"
TASK_QUEUE_DELAYED = "task_queue_delayed"
TASK_LOCK_PREFIX = "task_queue_lock:"
TASK_INFO_PREFIX = "task_info:"
CONSUMERS = "consumers"
PROCESSING_PREFIX = "task_queue_processing:"
RECONCILE_LOCK = "task_queue_reconcile_lock"


def processing(worker_id: str) -> str:
    return PROCESSING_PREFIX + worker_id


def task_lock(task_id: str) -> str:
    return TASK_LOCK_PREFIX + task_id


def task_info(task_id: str) -> str:
    return TASK_INFO_PREFIX + task_id


def task_cancel(task_id: str) -> str:
    return "task_queue_cancel:" + task_id


# The Gemini account pool (app/accounts.py).
ACCOUNT_KEYS = "google_accounts:keys"
ACCOUNT_PREFIX = "google_accounts:"
ACCOUNT_IMPORT_LOCK = "google_accounts:import_lock"
PROJECT_PREFIX = "google_projects:"
INFO_SUFFIX = ":info"
DAILY_SUFFIX = ":daily"
WINDOW_SUFFIX = ":minute_window"


def account_info(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id + INFO_SUFFIX


def account_daily(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id + DAILY_SUFFIX


def account_window(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id + WINDOW_SUFFIX


def project_daily(group: str) -> str:
    return PROJECT_PREFIX + group + DAILY_SUFFIX


def project_window(group: str) -> str:
    return PROJECT_PREFIX + group + WINDOW_SUFFIX


# Client API keys (app/api/auth.py). key_id is a fingerprint of the key, never the key.
API_RATE_PREFIX = "api_rate:"


def api_rate(key_id: str, window: int) -> str:
    return f"{API_RATE_PREFIX}{key_id}:{window}"
