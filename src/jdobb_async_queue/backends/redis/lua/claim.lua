-- claim_pending_job: claim up to `limit` claimable jobs, by priority then enqueue order.
-- KEYS[2]: the memo of this very call (its own key: one per call and claimer, so concurrent
--   claimers sharing a backend never overwrite each other's): the ids it claimed, as JSON.
-- KEYS[3]: the memo of the claimer's previous call, whose reply came: deleted (or KEYS[2]).
-- ARGV: now, resend flag and call token, worker_id, lease (seconds), limit, (unused), number
--   of job types (-1: any type), then the job types.
-- Returns the claim's started_at and lease_expires_at, then 12 values per claimed job: its id,
-- then CLAIMED_FIELDS (spec, and the fields a claim does not set); Python builds the records,
-- so Redis spends no time on JSON.

local worker_id, limit = ARGV[3], tonumber(ARGV[5])
local lease_until = fmt(NOW + tonumber(ARGV[4]))

-- A claim sent again after its reply was lost returns what the first attempt claimed.
local function replay()
  local memo = call('GET', KEYS[2])
  if not memo then
    return nil
  end
  local out = {NOW_S, lease_until}
  for _, id in ipairs(cjson.decode(memo)) do
    local f = call('HMGET', K_JOB(id), 'status', 'worker_id', 'started_at', 'lease_expires_at',
      unpack(CLAIMED_FIELDS))
    if f[1] == 'processing' and f[2] == worker_id then
      out[1], out[2] = f[3], f[4]
      out[#out + 1] = id
      for i = 5, #f do
        out[#out + 1] = f[i]
      end
    end
  end
  return out
end

local function job_types()
  local n = tonumber(ARGV[7])
  if n < 0 then
    return call('SMEMBERS', K_TYPES)
  end
  local types = {}
  for i = 1, n do
    types[i] = ARGV[7 + i]
  end
  return types
end

-- The first `limit` ready jobs of every type asked for, {score, id, job_type}, in claim order.
local function candidates()
  local found = {}
  for _, job_type in ipairs(job_types()) do
    local head = call('ZRANGE', K_READY(job_type), 0, limit - 1, 'WITHSCORES')
    for i = 1, #head, 2 do
      found[#found + 1] = {tonumber(head[i + 1]), head[i], job_type}
    end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  return found
end

-- Claim one job; append what Python needs of it to `out`.
local function claim(id, out)
  local f = call('HMGET', K_JOB(id), unpack(CLAIMED_FIELDS))
  f[2], f[3], f[11] = tonumber(f[2]) + 1, tonumber(f[3]) + 1, (tonumber(f[11]) or 0) + 1
  call('HDEL', K_JOB(id), 'where')
  call('ZADD', K_LEASES, lease_until, id)
  set_status(id, 'pending', 'processing', {'attempts', f[2], 'fence', f[3],
    'worker_id', worker_id, 'started_at', NOW_S, 'lease_expires_at', lease_until})
  publish_update(id)
  out[#out + 1] = id
  for i = 1, #CLAIMED_FIELDS do
    out[#out + 1] = f[i]
  end
end

if RESENT then
  local previous = replay()
  if previous then
    return previous
  end
end
if KEYS[3] ~= KEYS[2] then
  call('DEL', KEYS[3])
end
promote(1000)
local claimed, ids, emptied = {NOW_S, lease_until}, {}, {}
for _, c in ipairs(candidates()) do
  if #ids >= limit then
    break
  end
  local id = c[2]
  call('ZREM', K_READY(c[3]), id)
  emptied[c[3]] = true
  claim(id, claimed)
  ids[#ids + 1] = id
end
for job_type in pairs(emptied) do
  if call('EXISTS', K_READY(job_type)) == 0 then
    call('SREM', K_TYPES, job_type)
  end
end
if #ids < limit then
  call('DEL', K_QUIET) -- the caller goes idle: the next job must send a notice
end
if #ids > 0 then
  call('SET', KEYS[2], cjson.encode(ids), 'PX', 60000)
end
return claimed
