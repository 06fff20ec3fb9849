-- cancel: a PENDING or PROCESSING job becomes CANCELLED, its dependents with it.
-- ARGV: now, resend flag and call token, job id, reason?
-- Returns 1, or 0 if the job is unknown or already terminal. Cancelling a PROCESSING job
-- publishes the notice 'cancel <fence> <id>': the worker stops that attempt only.

local id, reason = ARGV[3], opt(ARGV[4])
local f = load(id)
local alive = f and not expired(f.expires_at)
if not alive or not SOURCES.cancel[f.status] then
  if RESENT and alive and f.status == 'cancelled' and changed_by_first_attempt(id) then
    return 1
  end
  return 0
end
end_job(id, f, 'cancelled', reason and {'error', reason}, not reason and {'error'} or nil)
mark(id)
if f.status == 'processing' then
  call('PUBLISH', CH_NOTICES, 'cancel ' .. f.fence .. ' ' .. id)
end
wake_workers()
return 1
