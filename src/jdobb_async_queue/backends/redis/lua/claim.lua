-- claim_pending_job: claim up to `limit` claimable jobs, by priority then enqueue order.
-- KEYS[2]: the memo of this very call (its own key: one per call and claimer, so concurrent
--   claimers sharing a backend never overwrite each other's): the ids it claimed, as JSON.
-- KEYS[3]: the memo of the claimer's previous call, whose reply came: deleted (or KEYS[2]).
-- ARGV: now, resend flag and call token, worker_id, lease (seconds), limit, park ('1': the
--   caller listens for hand-offs, so park it if handlers stay idle; see `park` in lib.lua),
--   number of job types (-1: any type), then the job types, then the hand-offs the caller has
--   received since its last claim ('<fence>|<id>': confirmed, so not handed again).
-- Returns the claim's started_at and lease_expires_at, then per claimed job its id and
-- CLAIMED_FIELDS (`codec.CLAIMED`: spec, and the fields a claim does not set); Python builds
-- the records, so Redis spends no time on JSON. Jobs handed to the caller whose arrival it has
-- not confirmed come first (see `hand_again`).

local worker_id, limit = ARGV[3], tonumber(ARGV[5])
local lease_until = fmt(NOW + tonumber(ARGV[4]))
local n_types = tonumber(ARGV[7])
local first_ack = 8 + math.max(n_types, 0)

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
  if n_types < 0 then
    return call('SMEMBERS', K_TYPES)
  end
  local types = {}
  for i = 1, n_types do
    types[i] = ARGV[7 + i]
  end
  return types
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
local claimed, ids = {NOW_S, lease_until}, {}
if ARGV[6] == '1' then
  if #ARGV >= first_ack then
    call('SREM', K_HANDED(worker_id), unpack(ARGV, first_ack))
  end
  ids = hand_again(worker_id, lease_until, limit, claimed)
end
promote(1000)
local types = job_types()
extend(ids, (claim_ready(types, limit - #ids, worker_id, lease_until, claimed)))
if #ids < limit then
  call('DEL', K_QUIET) -- the caller goes idle: the next job must send a notice
end
if ARGV[6] == '1' then
  if #ids < limit and n_types >= 0 then
    park(worker_id, limit - #ids, ARGV[4], types)
  else
    unpark(worker_id)
  end
end
if #ids > 0 then
  call('SET', KEYS[2], cjson.encode(ids), 'PX', 60000)
end
return claimed
