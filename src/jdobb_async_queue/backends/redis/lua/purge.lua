-- purge: delete terminal jobs of one status, finished before `before` (if given), of `job_type`
-- (if given), examining at most `budget` jobs per call.
-- ARGV: now, status, before?, job_type?, budget, cursor (the last score examined, or -inf),
-- ceiling? (the last update sequence number when the purge began; '' on its first call).
-- Returns {deleted, cursor, ceiling}: the cursor is '' once every job of the status was
-- examined. Jobs that ended after the purge began (their score is above the ceiling: a worker
-- finished them, or the purge itself cancelled them) are left for the next purge.

local status, before, job_type = ARGV[2], to_store(opt(ARGV[3])), opt(ARGV[4])
local budget, cursor = tonumber(ARGV[5]), ARGV[6]
local ceiling = opt(ARGV[7]) or (call('GET', K_SEQ) or '0')
if not IS_TERMINAL[status] then
  return {0, '', ceiling}
end
expire_some(100)
local lower = cursor == '-inf' and '-inf' or '(' .. cursor
local raw = call('ZRANGEBYSCORE', K_STATUS(status), lower, ceiling, 'WITHSCORES', 'LIMIT', 0,
  budget)
local deleted = 0
for i = 1, #raw, 2 do
  local id = raw[i]
  local f = call('HMGET', K_JOB(id), 'completed_at', 'job_type')
  local alive = alive_status(id)
  if not alive then
    delete_job(id, status) -- expired: gone already, not counted
  elseif (not before or tonumber(f[1] or '0') < tonumber(before))
      and (not job_type or f[2] == job_type) then
    delete_job(id, status)
    deleted = deleted + 1
  end
end
if #raw < 2 * budget then
  return {deleted, '', ceiling}
end
return {deleted, raw[#raw], ceiling}
