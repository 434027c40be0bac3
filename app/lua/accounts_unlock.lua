-- Release the import lock only if this holder still owns it (it may have expired and been taken).
-- KEYS[1] google_accounts:import_lock   ARGV[1] the holder's token
-- Returns 1 if released, 0 if the lock was no longer ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
