-- retry: a FAILED or CANCELLED job goes back to PENDING, its dependencies counted again.
-- ARGV: now, resend flag and call token, job id, delay (seconds; 0: due at once).
-- Returns 1, or 0 if the job is unknown, in another state, or its unique key is held by another
-- live job.

local id, delay = ARGV[3], tonumber(ARGV[4])
local execute_at = delay > 0 and fmt(NOW + delay) or nil
local key = K_JOB(id)
local f = load(id)
local alive = f and not expired(f.expires_at)
if not alive or not SOURCES.retry[f.status] then
  if RESENT and alive and f.status == 'pending' and changed_by_first_attempt(id) then
    return 1
  end
  return 0
end
if f.unique_key then
  local holder = call('HGET', K_UNIQUE, f.unique_key)
  if holder and holder ~= id then
    return 0
  end
  call('HSET', K_UNIQUE, f.unique_key, id)
end
call('ZREM', K_EXPIRY(f.status), id)
call('HDEL', key, 'error', 'message', 'results', 'completed_at', 'expires_at', 'execute_at')
local deps = call('HGET', key, 'deps')
f.pending_deps = count_deps(id, f.seq, deps and cjson.decode(deps) or {}, true)
f.execute_at = execute_at
local fields = {'attempts', 0, 'lost', 0, 'progress', '0.0', 'pending_deps', f.pending_deps,
  'where', index(id, f)}
if execute_at then
  extend(fields, {'execute_at', execute_at})
end
set_status(id, f.status, 'pending', fields)
mark(id)
publish_update(id)
woke = true
wake_workers()
return 1
