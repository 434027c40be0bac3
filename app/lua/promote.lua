-- Move retries that are due from the delayed set to the queue.
-- KEYS[1] task_queue_delayed   KEYS[2] task_queue
-- ARGV[1] now (unix s)   ARGV[2] max ids to move
-- Returns the number moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('LPUSH', KEYS[2], id)
end
return #due
