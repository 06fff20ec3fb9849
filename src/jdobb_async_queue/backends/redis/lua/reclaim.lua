-- reclaim_expired: PROCESSING jobs whose lease ran out (lease_expires_at < now) are lost once
-- more: past their `max_lost` they end FAILED (`lost_ends_job`, `lost_error` of `_policy`),
-- else back to PENDING, due at once; their attempt still counts.
-- ARGV: now, most jobs to reclaim.
-- Returns the ids of the jobs taken back.

expire_some(100)
local ids = call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. NOW_S, 'LIMIT', 0, tonumber(ARGV[2]))
local reclaimed = {}
for _, id in ipairs(ids) do
  local f = load(id)
  if held(f, nil, 'release') then
    local lost = tonumber(f.lost or '0') + 1
    local lost_s = string.format('%d', lost)
    if lost_ends_job(lost, tonumber(f.max_lost or DEFAULT_MAX_LOST)) then
      end_job(id, f, 'failed', {'error', lost_error(lost_s), 'lost', lost_s})
    else
      requeue(id, f, nil, {'lost', lost_s})
    end
    reclaimed[#reclaimed + 1] = id
  else
    call('ZREM', K_LEASES, id)
  end
end
wake_workers()
return reclaimed
