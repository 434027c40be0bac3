-- Return claimed tasks whose lease is gone to the queue, each exactly once.
-- KEYS[1] a worker's processing list   KEYS[2] task_queue
-- ARGV[1] task_queue_lock: prefix   ARGV[2] task_info: prefix   ARGV[3..] candidate task ids
-- A candidate is moved only if it is still in the list and still has no lease, so two
-- consumers reaping at once, or a worker that renewed meanwhile, never cause a double move.
-- Returns the ids moved.
local moved = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('EXISTS', ARGV[1] .. id) == 0 and redis.call('LREM', KEYS[1], 1, id) == 1 then
    redis.call('RPUSH', KEYS[2], id)
    redis.call('HINCRBY', ARGV[2] .. id, 'retry_count', 1)
    redis.call('HSET', ARGV[2] .. id, 'status', 'pending')
    table.insert(moved, id)
  end
end
return moved
