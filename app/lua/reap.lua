-- Return a dead worker's claimed tasks to the queue, each exactly once.
-- KEYS[1] the dead worker's processing list   KEYS[2] task_queue   KEYS[3] consumers
-- ARGV[1] dead worker id   ARGV[2] task_queue_lock: prefix   ARGV[3] task_info: prefix
-- A task whose lease is still held by another worker (it was re-claimed) is only dropped
-- from this list. Returns the ids returned to the queue.
local moved = {}
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  local owner = redis.call('GET', ARGV[2] .. id)
  if (not owner) or owner == ARGV[1] then
    redis.call('DEL', ARGV[2] .. id)
    redis.call('RPUSH', KEYS[2], id)
    redis.call('HINCRBY', ARGV[3] .. id, 'retry_count', 1)
    redis.call('HSET', ARGV[3] .. id, 'status', 'pending')
    table.insert(moved, id)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return moved
