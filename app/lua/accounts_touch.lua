-- Move a reserved request to "now", just before it is sent (a Files API upload reserves its
-- generateContent slot first, then spends seconds or minutes uploading).
-- KEYS[1] google_accounts:{id}:minute_window   KEYS[2] the project's window (= KEYS[1] when none)
-- KEYS[3] google_accounts:{id}:info
-- ARGV[1] the reservation's token   ARGV[2] now (unix s); "" = Redis TIME   ARGV[3] window length (s)
-- Safe because the entry is still inside the window: moving it later never lets a window hold
-- more than the limit (every request admitted meanwhile counted it). An entry that has aged
-- out, a cooling or inactive account: nothing moves, the caller acquires afresh.
-- Returns now (as a string) when moved, "" otherwise.
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local f = redis.call('HMGET', KEYS[3], 'status', 'cooldown_until')
if f[1] ~= 'active' or (tonumber(f[2] or '0') or 0) > now then
  return ''
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now - tonumber(ARGV[3]) then
  return ''
end
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
if KEYS[2] ~= KEYS[1] then
  redis.call('ZADD', KEYS[2], 'XX', now, ARGV[1])
end
redis.call('HSET', KEYS[3], 'last_used', tostring(now))
return tostring(now)
