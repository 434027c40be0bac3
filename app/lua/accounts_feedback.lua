-- Apply the verdict on one Gemini call to the pool.
-- KEYS[1] google_accounts:keys   KEYS[2] google_accounts:{id}:info of the account that made the call
-- ARGV[1] account key prefix     ARGV[2] info suffix
-- ARGV[3] action: ok | cooldown | deactivate | count (a failure that changes nothing else)
-- ARGV[4] scope of a cooldown: account | project (quotas are per project: every key of it cools)
-- ARGV[5] cooldown end (unix s)  ARGV[6] reason (never a secret)   ARGV[7] now (unix s)
-- A cooldown only ever extends: a shorter verdict never shortens a longer one already set.
-- Returns the account's count of consecutive failures after this call.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local action = ARGV[3]
if action == 'ok' then
  redis.call('HSET', KEYS[2], 'failures', 0, 'last_ok', ARGV[7])
  return 0
end
local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
redis.call('HSET', KEYS[2], 'last_error', ARGV[6], 'last_error_at', ARGV[7])
if action == 'deactivate' then
  redis.call('HSET', KEYS[2], 'status', 'inactive', 'status_reason', ARGV[6])
elseif action == 'cooldown' then
  local untl = tonumber(ARGV[5])
  local targets = {KEYS[2]}
  local group = redis.call('HGET', KEYS[2], 'group') or ''
  if ARGV[4] == 'project' and group ~= '' then
    targets = {}
    for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
      local key = ARGV[1] .. id .. ARGV[2]
      if redis.call('HGET', key, 'group') == group then
        table.insert(targets, key)
      end
    end
  end
  for _, key in ipairs(targets) do
    local cur = tonumber(redis.call('HGET', key, 'cooldown_until') or '0') or 0
    if untl > cur then
      redis.call('HSET', key, 'cooldown_until', tostring(untl))
    end
  end
end
return failures
