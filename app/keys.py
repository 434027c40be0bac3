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

Task ids are server-made hex uuids, so no user text ever reaches a key name.
"""

from __future__ import annotations

TASK_QUEUE = "task_queue"
TASK_QUEUE_FAILED = "task_queue_failed"
TASK_QUEUE_DELAYED = "task_queue_delayed"
TASK_LOCK_PREFIX = "task_queue_lock:"
TASK_INFO_PREFIX = "task_info:"
CONSUMERS = "consumers"
PROCESSING_PREFIX = "task_queue_processing:"


def processing(worker_id: str) -> str:
    return PROCESSING_PREFIX + worker_id


def task_lock(task_id: str) -> str:
    return TASK_LOCK_PREFIX + task_id


def task_info(task_id: str) -> str:
    return TASK_INFO_PREFIX + task_id
