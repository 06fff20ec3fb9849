-- renew_many: extend the leases of PROCESSING jobs whose fence matches.
-- ARGV: now, lease duration (seconds), count, then per lease: job id, fence.
-- Returns one 0/1 per lease.

local lease_until, done, at = fmt(NOW + tonumber(ARGV[2])), {}, 4
for i = 1, tonumber(ARGV[3]) do
  local id, fence = ARGV[at], ARGV[at + 1]
  at = at + 2
  local f = call('HMGET', K_JOB(id), 'status', 'fence')
  if f[1] == 'processing' and f[2] == fence then
    call('HSET', K_JOB(id), 'lease_expires_at', lease_until)
    call('ZADD', K_LEASES, lease_until, id)
    done[i] = 1
  else
    done[i] = 0
  end
end
return done
