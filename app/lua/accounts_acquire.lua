-- Choose one Gemini account for one generateContent request and record the use, atomically.
-- KEYS[1]  google_accounts:keys (Set of account ids)
-- ARGV[1]  now (unix s); "" = Redis TIME, one clock for every consumer
-- ARGV[2]  window length (s): Google's 60 s plus a safety margin
-- ARGV[3]  quota day label (Pacific YYYY-MM-DD)   ARGV[4] that day's end (unix s)
-- ARGV[5]  the label of the day after (used when the clock has passed ARGV[4])
-- ARGV[6]  request token (a unique window member)
-- ARGV[7]  mode: "use" records the request; "peek" only chooses (nothing is written)
-- ARGV[8]  only this account id ("" = any account)
-- ARGV[9]  account key prefix   ARGV[10] project key prefix
-- ARGV[11] info suffix          ARGV[12] daily suffix        ARGV[13] window suffix
-- ARGV[14] window TTL (s)       ARGV[15] daily TTL (s)
-- Eligible: status active, cooldown over, window count < minute limit, today's count < daily
-- limit. Accounts with the same `group` (Google Cloud project) are counted together against
-- the smallest limits among them. Best: most minute capacity left, ties least recently used.
-- Returns {id, api key, model, project, failures, now} or {"", next eligible time | "-1", now}.
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local window = tonumber(ARGV[2])
local day, day_end = ARGV[3], tonumber(ARGV[4])
if now >= day_end then
  day, day_end = ARGV[5], day_end + 86400  -- a hint only: the next call recomputes the day
end
local mode, only = ARGV[7], ARGV[8]
local AP, PP, INFO, DAILY, WIN = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]

local accounts, group_limits = {}, {}
local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', AP .. id .. INFO, 'status', 'minute_limit', 'daily_limit', 'group',
                       'cooldown_until', 'last_used', 'api_key', 'model', 'project', 'failures')
  if f[2] then
    local a = {id = id, status = f[1], minute = tonumber(f[2]), daily = tonumber(f[3]), group = f[4] or '',
               cool = tonumber(f[5] or '0') or 0, last = tonumber(f[6] or '0') or 0, key = f[7],
               model = f[8] or '', project = f[9] or '', failures = f[10] or '0'}
    table.insert(accounts, a)
    if a.group ~= '' then
      local g = group_limits[a.group]
      if g == nil then
        group_limits[a.group] = {minute = a.minute, daily = a.daily}
      else
        g.minute = math.min(g.minute, a.minute)
        g.daily = math.min(g.daily, a.daily)
      end
    end
  end
end

-- Usage of the quota an account draws on: its project's, or its own.
local usage_cache = {}
local function usage(a)
  local base, limits
  if a.group ~= '' then
    base, limits = PP .. a.group, group_limits[a.group]
  else
    base, limits = AP .. a.id, {minute = a.minute, daily = a.daily}
  end
  local u = usage_cache[base]
  if u == nil then
    local wkey = base .. WIN
    redis.call('ZREMRANGEBYSCORE', wkey, '-inf', now - window)
    local count = redis.call('ZCARD', wkey)
    local used = tonumber(redis.call('HGET', base .. DAILY, day) or '0')
    local free_at = now
    if count >= limits.minute then
      -- the window drops below the limit when its (count - limit)-th oldest entry ages out
      local e = redis.call('ZRANGE', wkey, count - limits.minute, count - limits.minute, 'WITHSCORES')
      free_at = tonumber(e[2]) + window
    end
    if used >= limits.daily then
      free_at = math.max(free_at, day_end)
    end
    u = {base = base, count = count, used = used, minute = limits.minute, daily = limits.daily, free_at = free_at}
    usage_cache[base] = u
  end
  return u
end

local best, best_u = nil, nil
local next_free = nil
for _, a in ipairs(accounts) do
  if a.status == 'active' and (only == '' or only == a.id) then
    local u = usage(a)
    if a.cool <= now and u.count < u.minute and u.used < u.daily then
      local left = u.minute - u.count
      if best == nil or left > best_u.minute - best_u.count
          or (left == best_u.minute - best_u.count and a.last < best.last) then
        best, best_u = a, u
      end
    else
      local t = math.max(a.cool, u.free_at)
      if next_free == nil or t < next_free then
        next_free = t
      end
    end
  end
end

if best == nil then
  if next_free == nil then
    return {'', '-1', tostring(now)}
  end
  return {'', tostring(next_free), tostring(now)}
end

if mode == 'use' then
  local token = ARGV[6]
  local wttl, dttl = tonumber(ARGV[14]), tonumber(ARGV[15])
  local own = AP .. best.id
  redis.call('ZADD', own .. WIN, now, token)
  redis.call('EXPIRE', own .. WIN, wttl)
  redis.call('HINCRBY', own .. DAILY, day, 1)
  redis.call('EXPIRE', own .. DAILY, dttl)
  if best_u.base ~= own then
    redis.call('ZADD', best_u.base .. WIN, now, token)
    redis.call('EXPIRE', best_u.base .. WIN, wttl)
    redis.call('HINCRBY', best_u.base .. DAILY, day, 1)
    redis.call('EXPIRE', best_u.base .. DAILY, dttl)
  end
  redis.call('HSET', own .. INFO, 'last_used', tostring(now))
end
return {best.id, best.key, best.model, best.project, best.failures, tostring(now)}
