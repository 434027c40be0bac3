-- Finish a claimed task: drop it from the worker's processing list and release its lease.
-- KEYS[1] processing list of the worker   KEYS[2] task_queue_lock:{id}   KEYS[3] task_info:{id}
-- KEYS[4] destination list or zset ("" none): task_queue_failed, task_queue_delayed or task_queue
-- ARGV[1] task id   ARGV[2] worker id   ARGV[3] new status   ARGV[4] mode: ack|fail|delay|requeue
-- ARGV[5] due time (delay)   ARGV[6] task_info TTL (s)
-- Returns 1 if the task was in the processing list (this worker still owned it), else 0.
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
if removed == 0 then
  return 0
end
redis.call('HSET', KEYS[3], 'status', ARGV[3])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
if ARGV[4] == 'fail' then
  redis.call('LPUSH', KEYS[4], ARGV[1])
elseif ARGV[4] == 'delay' then
  redis.call('ZADD', KEYS[4], tonumber(ARGV[5]), ARGV[1])
elseif ARGV[4] == 'requeue' then
  redis.call('RPUSH', KEYS[4], ARGV[1])
end
return 1
