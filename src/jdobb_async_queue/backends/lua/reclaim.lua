-- reclaim_expired: PROCESSING jobs whose lease ran out (lease_expires_at < now) go back to
-- PENDING, due at once; their attempt still counts.
-- ARGV: now, most jobs to reclaim.
-- Returns the ids of the reclaimed jobs.

expire_some(100)
local ids = call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. NOW_S, 'LIMIT', 0, tonumber(ARGV[2]))
local reclaimed = {}
for _, id in ipairs(ids) do
  local f = load(id)
  if held(f, nil, 'release') then
    requeue(id, f, nil, nil)
    reclaimed[#reclaimed + 1] = id
  else
    call('ZREM', K_LEASES, id)
  end
end
wake_workers()
return reclaimed
