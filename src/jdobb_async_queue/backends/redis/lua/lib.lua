-- Helpers shared by the scripts. Each script gets only the definitions it uses (transitively),
-- after the generated ones (key names, state machine, policy, and the job's layout in its hash:
-- CLAIMED_FIELDS, RECORD_HASH, UPDATE_HASH, ENQUEUE_ARGS, NEW_JOB...): see `redis/scripts.py`
-- and `redis/codec.py`, which derive the layout from JobRecord. Every top-level definition
-- starts with `local` at the start of a line, comments just above it.
--
-- A definition whose line ends in "-- per call" depends on the call (its KEYS, ARGV, the time):
-- as a script it runs with the rest; in the function library (Redis 7+, see `redis/scripts.py`),
-- where everything else is defined once when the library is loaded, it is assigned again at
-- the start of every call. Nothing else may change between calls: no other top-level value is
-- assigned after its definition, and tables defined here are only read.
--
-- Conventions: KEYS[1] is the namespace prefix (its hash tag routes the call); ARGV[1] is the
-- clock: `now` as the caller formatted it (a test clock drives the store: stored verbatim, so
-- Python reads back the very float it sent), or '~' .. the caller's now: the server's TIME is
-- the store's now, and absolute times the caller passes are moved onto it (`to_store`).
-- Optional string arguments come as '' (None) or '=' .. value. A field that is None is absent
-- from the job's hash. Redis calls are the cost here (a few microseconds each): read a job's
-- fields with one HMGET and write them with one HSET where possible.

local call = redis.call -- per call

-- Shortest decimal text that reads back as exactly `x`.
local function fmt(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then
    s = string.format('%.17g', x)
  end
  return s
end

-- The store's now (a number and its text) and the caller's now (see the conventions above).
local function clock()
  local arg = ARGV[1]
  if string.sub(arg, 1, 1) ~= '~' then
    local now = tonumber(arg)
    return now, arg, now
  end
  local t = call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  return now, fmt(now), tonumber(string.sub(arg, 2))
end

local NOW, NOW_S, CALLER_NOW = clock() -- per call

-- An absolute time on the caller's clock (text), as text on the store's clock. Clocks within
-- CLOCK_TOLERANCE seconds of each other count as agreeing (the difference is mostly the call's
-- latency): the time is kept exactly as given.
local CLOCK_TOLERANCE = 1.0
local function to_store(t)
  if not t or math.abs(NOW - CALLER_NOW) <= CLOCK_TOLERANCE then
    return t
  end
  return fmt(tonumber(t) - CALLER_NOW + NOW)
end

local function opt(s)
  if s == '' then
    return nil
  end
  return string.sub(s, 2)
end

-- Append the values of `more` to the array `into`.
local function extend(into, more)
  if more then
    for _, v in ipairs(more) do
      into[#into + 1] = v
    end
  end
  return into
end

-- Sequence numbers (enqueue order and update order) from one counter, reserved in growing
-- chunks: a script that needs many pays for few INCRBYs, and at most half of them are wasted.
local seq_next, seq_last, seq_chunk = 1, 0, 1 -- per call
local function next_seq()
  if seq_next > seq_last then
    seq_last = call('INCRBY', K_SEQ, seq_chunk)
    seq_next = seq_last - seq_chunk + 1
    seq_chunk = seq_chunk * 2
  end
  seq_next = seq_next + 1
  return seq_next - 1
end

local function rank_score(rank, seq)
  return tonumber(rank) * 1e15 + tonumber(seq)
end

-- Members of `scheduled` sort by (due time, then) priority and enqueue order.
local function sched_member(rank, seq, id)
  return rank .. string.format('%015d', tonumber(seq)) .. id
end

local SCHED_ID_AT = 17 -- where the id starts in a `scheduled` member

-- Whoever made jobs claimable (or moved a due time) sets this; `wake_workers` publishes one
-- "jobs" notice at the end of the script, unless one is out already and no claimer has found
-- the queue empty since (then every idle worker has a notice to read).
local woke = false -- per call

local function wake_workers()
  if woke and call('SET', K_QUIET, '1', 'NX') then
    call('PUBLISH', CH_NOTICES, 'jobs')
  end
end

-- Fields a job's transitions read, with one HMGET: those ending a job, and those it needs to be
-- filed again.
local ENDING = {'status', 'fence', 'ttl', 'unique_key', 'dependents', 'where', 'job_type',
  'rank', 'seq', 'update_seq'}
local FIELDS = {'status', 'fence', 'ttl', 'unique_key', 'dependents', 'where', 'job_type',
  'rank', 'seq', 'update_seq', 'attempts', 'max_retries', 'retry_delay', 'execute_at',
  'pending_deps', 'expires_at', 'lost', 'max_lost'}

-- The job's `names` (default: FIELDS) as a table (absent ones nil), or nil if there is no such
-- job. `names` must start with 'status'.
local function load(id, names)
  names = names or FIELDS
  local values = call('HMGET', K_JOB(id), unpack(names))
  if not values[1] then
    return nil
  end
  local f = {}
  for i, name in ipairs(names) do
    f[name] = values[i] or nil
  end
  return f
end

-- Whether a job's ttl ran out (expires_at: its field, or nil/false for none).
local function expired(expires_at)
  return expires_at and tonumber(expires_at) <= NOW
end

-- The job's status, or nil if it does not exist or its ttl ran out.
local function alive_status(id)
  local f = call('HMGET', K_JOB(id), 'status', 'expires_at')
  if not f[1] or expired(f[2]) then
    return nil
  end
  return f[1]
end

-- Move the job to status `new` (the status zsets keep the order of updates), setting `fields`
-- (an array of field, value, ...) in the same HSET; `update_seq` is the job's (as read with its
-- other fields), or nil to count up on the server.
local function set_status(id, old, new, fields, update_seq)
  if old then
    call('ZREM', K_STATUS(old), id)
  end
  call('ZADD', K_STATUS(new), next_seq(), id)
  fields = fields or {}
  if update_seq then
    call('HSET', K_JOB(id), 'status', new, 'updated_at', NOW_S, 'update_seq',
      tonumber(update_seq) + 1, unpack(fields))
  else
    call('HSET', K_JOB(id), 'status', new, 'updated_at', NOW_S, unpack(fields))
    call('HINCRBY', K_JOB(id), 'update_seq', 1)
  end
end

-- Call `command` on `key` with the values of `items` after it, in calls of at most 1000 values
-- (Lua's unpack has a limit).
local function call_many(command, key, items)
  for first = 1, #items, 1000 do
    call(command, key, unpack(items, first, math.min(first + 999, #items)))
  end
end

local function json_str(s)
  return cjson.encode(s)
end

-- Append to `out` the JSON members of the fields of `layout` (generated: {',"name":', quoted})
-- that are set in `values` (an HMGET's reply, in the same order): text quoted, the rest (numbers,
-- JSON) as stored.
local function append_json(out, values, layout)
  for i, field in ipairs(layout) do
    local v = values[i]
    if v then
      out[#out + 1] = field[1] .. (field[2] and json_str(v) or v)
    end
  end
end

-- Tell the job's subscribers it is gone (deleted), if anybody listens.
local function publish_gone(id)
  local channel = CH_UPDATES(id)
  if call('PUBSUB', 'NUMSUB', channel)[2] == 0 then
    return
  end
  call('PUBLISH', channel, '{"job_id":' .. json_str(id) .. ',"status":"cancelled","timestamp":'
    .. NOW_S .. ',"gone":true}')
end

-- Publish the job's UpdateRecord on its channel (UPDATE_HASH: the fields it announces).
local function publish_record(id, channel)
  local out = {UPDATE_START, json_str(id)}
  append_json(out, call('HMGET', K_JOB(id), unpack(UPDATE_HASH)), UPDATE_JSON)
  out[#out + 1] = '}'
  call('PUBLISH', channel, table.concat(out))
end

-- Publish the job's UpdateRecord on its channel, if anybody listens there.
local function publish_update(id)
  local channel = CH_UPDATES(id)
  if call('PUBSUB', 'NUMSUB', channel)[2] > 0 then
    publish_record(id, channel)
  end
end

-- publish_update for many jobs, asking for their listeners with one call.
local function publish_updates(ids)
  local channels = {}
  for i, id in ipairs(ids) do
    channels[i] = CH_UPDATES(id)
  end
  for first = 1, #channels, 1000 do
    local counts = call('PUBSUB', 'NUMSUB', unpack(channels, first,
      math.min(first + 999, #channels)))
    for i = 2, #counts, 2 do
      if counts[i] > 0 then
        publish_record(ids[first + i / 2 - 1], counts[i - 1])
      end
    end
  end
end

-- The job as the JSON of a JobRecord: its stored spec (the last of RECORD_HASH) with the
-- record's other fields appended.
local function record_json(id)
  local values = call('HMGET', K_JOB(id), unpack(RECORD_HASH))
  local out = {string.sub(values[#RECORD_HASH], 1, -2)}
  append_json(out, values, RECORD_JSON)
  out[#out + 1] = '}'
  return table.concat(out)
end

local function json_array(items)
  return '[' .. table.concat(items, ',') .. ']'
end

-- Add a PENDING job to the index it belongs in (f: its job_type, rank, seq, pending_deps,
-- execute_at) and return that index's name, for the job's `where` field.
local function index(id, f)
  if tonumber(f.pending_deps or '0') > 0 then
    call('ZADD', K_WAITING, rank_score(f.rank, f.seq), id)
    return 'waiting'
  end
  woke = true -- claimable now, or idle workers must learn the new due time
  if f.execute_at and tonumber(f.execute_at) > NOW then
    call('ZADD', K_SCHEDULED, f.execute_at, sched_member(f.rank, f.seq, id))
    return 'scheduled'
  end
  call('ZADD', K_READY(f.job_type), rank_score(f.rank, f.seq), id)
  call('SADD', K_TYPES, f.job_type)
  return 'ready'
end

-- Take a PENDING job out of its index (f: as for `index`, plus `where`); the caller deletes
-- the `where` field.
local function unindex(id, f)
  if f.where == 'ready' then
    local ready = K_READY(f.job_type)
    call('ZREM', ready, id)
    if call('EXISTS', ready) == 0 then
      call('SREM', K_TYPES, f.job_type)
    end
  elseif f.where == 'scheduled' then
    call('ZREM', K_SCHEDULED, sched_member(f.rank, f.seq, id))
  elseif f.where == 'waiting' then
    call('ZREM', K_WAITING, id)
  end
end

-- File a PENDING job again after its fields changed (dependencies met).
local function place(id)
  local f = load(id)
  unindex(id, f)
  call('HSET', K_JOB(id), 'where', index(id, f))
end

-- Move scheduled jobs that are due into the ready zsets (at most `limit` per call).
local function promote(limit)
  local due = call('ZRANGEBYSCORE', K_SCHEDULED, '-inf', NOW_S, 'LIMIT', 0, limit)
  for _, member in ipairs(due) do
    call('ZREM', K_SCHEDULED, member)
    local id = string.sub(member, SCHED_ID_AT)
    local key = K_JOB(id)
    local f = call('HMGET', key, 'job_type', 'rank', 'seq')
    call('HSET', key, 'where', 'ready')
    call('ZADD', K_READY(f[1]), rank_score(f[2], f[3]), id)
    call('SADD', K_TYPES, f[1])
  end
end

-- Count the job's unmet dependencies and add the reverse edges (`<seq>|<id>`: the seq tells
-- the job apart from a later one reusing its id). Returns the count, then the first dependency
-- that ended FAILED or CANCELLED and its status; with `broken_waits` such a dependency counts
-- as unmet (a retried job waits for it to be retried and complete).
local function count_deps(id, seq, deps, broken_waits)
  local edge = string.format('%d', tonumber(seq)) .. '|' .. id
  local seen, n, broken, broken_status = {}, 0, nil, nil
  for _, dep in ipairs(deps) do
    if not seen[dep] then
      seen[dep] = true
      local status = alive_status(dep)
      if status and status ~= 'complete' then
        local is_broken = status == 'failed' or status == 'cancelled'
        if is_broken and not broken then
          broken, broken_status = dep, status
        end
        if broken_waits or not is_broken then
          n = n + 1
          call('SADD', K_DEPS(dep), edge)
          call('HSET', K_JOB(dep), 'dependents', '1')
        end
      end
    end
  end
  return n, broken, broken_status
end

-- The dependents of `id` that still wait on it (forgetting the edges).
local function waiting_dependents(id)
  local key = K_DEPS(id)
  local edges = call('SMEMBERS', key)
  call('DEL', key)
  call('HDEL', K_JOB(id), 'dependents')
  local found = {}
  for _, edge in ipairs(edges) do
    local bar = string.find(edge, '|', 1, true)
    local seq, dep = string.sub(edge, 1, bar - 1), string.sub(edge, bar + 1)
    local f = call('HMGET', K_JOB(dep), 'status', 'where', 'seq')
    if f[1] == 'pending' and f[2] == 'waiting' and f[3] == seq then
      found[#found + 1] = dep
    end
  end
  return found
end

-- Settle the dependents of `id`, which just ended with `status`: COMPLETE counts down their
-- unmet dependencies; FAILED or CANCELLED adds them to `todo`, to be cancelled.
local function settle(id, status, todo)
  for _, dep in ipairs(waiting_dependents(id)) do
    if status == 'complete' then
      if call('HINCRBY', K_JOB(dep), 'pending_deps', -1) <= 0 then
        place(dep)
      end
    else
      todo[#todo + 1] = {dep, 'cancelled', {'error', dependency_error(id, status)}}
    end
  end
end

-- Put one PENDING or PROCESSING job (f: its FIELDS) into terminal `status`, setting `fields`
-- and deleting `drop` (arrays) with the same calls.
local function end_one(id, f, status, fields, drop, todo)
  if f.status == 'processing' then
    call('ZREM', K_LEASES, id)
  else
    unindex(id, f)
  end
  call('HDEL', K_JOB(id), 'worker_id', 'lease_expires_at', 'where', unpack(drop or {}))
  fields = extend({'completed_at', NOW_S}, fields)
  local expires_at = f.ttl and fmt(NOW + tonumber(f.ttl))
  if expires_at then
    extend(fields, {'expires_at', expires_at})
    call('ZADD', K_EXPIRY(status), expires_at, id)
  end
  set_status(id, f.status, status, fields, f.update_seq)
  if f.unique_key and call('HGET', K_UNIQUE, f.unique_key) == id then
    call('HDEL', K_UNIQUE, f.unique_key)
  end
  publish_update(id)
  if f.dependents then
    settle(id, status, todo)
  end
end

-- Put a job into a terminal state and, in the same step, settle its dependents, transitively.
local function end_job(id, f, status, fields, drop)
  local todo = {}
  end_one(id, f, status, fields, drop, todo)
  local i = 1
  while i <= #todo do
    local dep, dep_status, dep_fields = todo[i][1], todo[i][2], todo[i][3]
    i = i + 1
    local g = load(dep, ENDING)
    if g and (g.status == 'pending' or g.status == 'processing') then
      end_one(dep, g, dep_status, dep_fields, nil, todo)
    end
  end
end

-- Delete a terminal job and its index entries. A job still waiting on it (retried by hand
-- while it was FAILED or CANCELLED) can never run now: it is cancelled, transitively.
local function delete_job(id, status)
  local orphans = {}
  if call('HEXISTS', K_JOB(id), 'dependents') == 1 then
    orphans = waiting_dependents(id)
  end
  call('ZREM', K_STATUS(status), id)
  call('ZREM', K_EXPIRY(status), id)
  call('DEL', K_JOB(id), K_DEPS(id))
  publish_gone(id)
  local reason = {'error', dependency_error(id, 'deleted')}
  for _, dep in ipairs(orphans) do
    local g = load(dep, ENDING)
    if g and g.status == 'pending' then
      end_job(dep, g, 'cancelled', reason)
    end
  end
end

-- Delete terminal jobs whose ttl ran out, `limit` at most.
local function expire_some(limit)
  for _, status in ipairs(TERMINAL) do
    if limit <= 0 then
      return
    end
    local ids = call('ZRANGEBYSCORE', K_EXPIRY(status), '-inf', NOW_S, 'LIMIT', 0, limit)
    for _, id in ipairs(ids) do
      delete_job(id, status)
    end
    limit = limit - #ids
  end
end

-- PROCESSING -> PENDING (f: its FIELDS): retried later (`execute_at`), or released or
-- reclaimed (nil: due at once). `fields` are set in the same HSET.
local function requeue(id, f, execute_at, fields)
  call('ZREM', K_LEASES, id)
  local drop = {'worker_id', 'lease_expires_at'}
  if not execute_at then
    drop[#drop + 1] = 'execute_at'
  end
  call('HDEL', K_JOB(id), unpack(drop))
  f.execute_at = execute_at
  fields = extend({'where', index(id, f)}, fields)
  if execute_at then
    extend(fields, {'execute_at', execute_at})
  end
  set_status(id, 'processing', 'pending', fields, f.update_seq)
  publish_update(id)
end

-- Whether the job (f: its FIELDS, or nil) is in a state allowing `event` and has this fence
-- (any, if nil).
local function held(f, fence, event)
  if not f or not SOURCES[event][f.status] then
    return false
  end
  return fence == nil or f.fence == fence
end

-- For a call sent again after its reply was lost: whether the first attempt already changed the
-- job. Each call carries a token of its own (OP), which the changes it makes store in `op`.
local RESENT, OP = string.sub(ARGV[2] or '', 1, 1) == '1', string.sub(ARGV[2] or '', 2) -- per call
local function changed_by_first_attempt(id, fence)
  local f = call('HMGET', K_JOB(id), 'op', 'fence')
  return f[1] == OP and (fence == nil or f[2] == fence)
end

-- Mark the job as changed by this call (see `changed_by_first_attempt`).
local function mark(id)
  call('HSET', K_JOB(id), 'op', OP)
end

-- The first `limit` ready jobs of the given types, {score, id, job_type}, in claim order.
local function candidates(types, limit)
  local found = {}
  for _, job_type in ipairs(types) do
    local head = call('ZRANGE', K_READY(job_type), 0, limit - 1, 'WITHSCORES')
    for i = 1, #head, 2 do
      found[#found + 1] = {tonumber(head[i + 1]), head[i], job_type}
    end
  end
  table.sort(found, function(a, b) return a[1] < b[1] end)
  return found
end

-- Claim one ready job (already out of its ready zset and indexed as PROCESSING) for
-- `worker_id` until `lease_until`; append its id and CLAIMED_FIELDS to `out` (as text, as the
-- hash holds them: `codec.claimed_records` splices them into the job's JSON). Returns its new
-- fence.
local function claim_one(id, worker_id, lease_until, out)
  local f = call('HMGET', K_JOB(id), unpack(CLAIMED_FIELDS))
  local attempts, fence, seq = CLAIMED_AT.attempts, CLAIMED_AT.fence, CLAIMED_AT.update_seq
  f[attempts] = tostring(tonumber(f[attempts]) + 1)
  f[fence] = tostring(tonumber(f[fence]) + 1)
  f[seq] = tostring((tonumber(f[seq]) or 0) + 1)
  call('HDEL', K_JOB(id), 'where')
  call('HSET', K_JOB(id), 'status', 'processing', 'updated_at', NOW_S, 'update_seq', f[seq],
    'attempts', f[attempts], 'fence', f[fence], 'worker_id', worker_id, 'started_at', NOW_S,
    'lease_expires_at', lease_until)
  out[#out + 1] = id
  for i = 1, #CLAIMED_FIELDS do
    out[#out + 1] = f[i]
  end
  return f[fence]
end

-- Claim up to `limit` ready jobs of `types` for `worker_id`, by priority then enqueue order
-- (appended to `out` as by claim_one). Returns their ids and fences. The index entries of all
-- of them are moved with a few calls, whatever their number.
local function claim_ready(types, limit, worker_id, lease_until, out)
  local ids, fences, by_type = {}, {}, {}
  if limit <= 0 then
    return ids, fences
  end
  for _, c in ipairs(candidates(types, limit)) do
    if #ids >= limit then
      break
    end
    ids[#ids + 1] = c[2]
    by_type[c[3]] = extend(by_type[c[3]] or {}, {c[2]})
  end
  if #ids == 0 then
    return ids, fences
  end
  for job_type, taken in pairs(by_type) do
    call_many('ZREM', K_READY(job_type), taken)
    if call('EXISTS', K_READY(job_type)) == 0 then
      call('SREM', K_TYPES, job_type)
    end
  end
  local leases, processing = {}, {}
  for _, id in ipairs(ids) do
    extend(leases, {lease_until, id})
    extend(processing, {next_seq(), id})
  end
  call_many('ZADD', K_LEASES, leases)
  call_many('ZREM', K_STATUS('pending'), ids)
  call_many('ZADD', K_STATUS('processing'), processing)
  for i, id in ipairs(ids) do
    fences[i] = claim_one(id, worker_id, lease_until, out)
  end
  publish_updates(ids)
  return ids, fences
end

-- Parking. A worker whose claim left handlers idle, and which listens on its hand-off channel,
-- is parked: the next jobs of its types are claimed for it by the call that makes them
-- claimable (`hand_off`) and published to it, saving it the round trip of a claim. The park
-- lapses PARK_TTL seconds after the worker's last claim, and a worker whose connection is gone
-- (no subscriber on its channel) is unparked when found.
local PARK_TTL = 60
local function unpark(worker_id)
  local types = call('HGET', K_PARK(worker_id), 'types')
  if not types then
    return
  end
  for _, job_type in ipairs(cjson.decode(types)) do
    call('ZREM', K_PARKED(job_type), worker_id)
  end
  call('DEL', K_PARK(worker_id))
end

-- Park `worker_id` with `credit` idle handlers for jobs of `types`, leased for `lease` seconds.
local function park(worker_id, credit, lease, types)
  local key = K_PARK(worker_id)
  call('HSET', key, 'credit', credit, 'lease', lease, 'types', cjson.encode(types))
  call('EXPIRE', key, PARK_TTL)
  local lapses = fmt(NOW + PARK_TTL)
  for _, job_type in ipairs(types) do
    call('ZADD', K_PARKED(job_type), lapses, worker_id)
  end
end

-- Claim ready jobs of `job_type` (and of the other types of each worker) for the workers
-- parked on that type, as many as each has credit for, and publish them on each worker's
-- channel; remember them in its `handed` set until its next claim confirms their arrival.
-- Returns whether jobs of `job_type` may still be ready afterwards.
local function hand_off(job_type)
  local parked = K_PARKED(job_type)
  call('ZREMRANGEBYSCORE', parked, '-inf', '(' .. NOW_S)
  local workers = call('ZRANGE', parked, 0, -1)
  if #workers > 0 then
    promote(1000) -- as a claim would: jobs that came due meanwhile go first
  end
  for n, worker_id in ipairs(workers) do
    if n > 1 and call('EXISTS', K_READY(job_type)) == 0 then
      return false
    end
    local channel = CH_HANDOFF(worker_id)
    local p = call('HMGET', K_PARK(worker_id), 'credit', 'lease', 'types')
    if not p[1] or call('PUBSUB', 'NUMSUB', channel)[2] == 0 then
      unpark(worker_id) -- lapsed, or its connection is gone
    else
      local credit = tonumber(p[1])
      local ids, fences = claim_ready(cjson.decode(p[3]), credit,
        worker_id, fmt(NOW + tonumber(p[2])), {})
      local records, members = {}, {}
      for i, id in ipairs(ids) do
        records[i] = record_json(id)
        members[i] = fences[i] .. '|' .. id
      end
      if #ids > 0 then
        local handed = K_HANDED(worker_id)
        call('SADD', handed, unpack(members))
        call('EXPIRE', handed, PARK_TTL + tonumber(p[2]))
        call('PUBLISH', channel, json_array(records))
      end
      if #ids >= credit then
        unpark(worker_id)
      else
        call('HSET', K_PARK(worker_id), 'credit', credit - #ids)
        return false -- it took fewer than it could: none of its types has a ready job left
      end
    end
  end
  return call('EXISTS', K_READY(job_type)) == 1
end

-- Hand out again (in a claim's reply, appended to `out` as by claim_one) the jobs handed to
-- `worker_id` whose arrival it has not confirmed: their message may have been lost with a
-- connection. At most `limit`; returns their ids.
local function hand_again(worker_id, lease_until, limit, out)
  local handed, ids = K_HANDED(worker_id), {}
  for _, member in ipairs(call('SMEMBERS', handed)) do
    if #ids >= limit then
      break
    end
    call('SREM', handed, member)
    local bar = string.find(member, '|', 1, true)
    local fence, id = string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
    local f = call('HMGET', K_JOB(id), 'status', 'worker_id', 'fence', unpack(CLAIMED_FIELDS))
    if f[1] == 'processing' and f[2] == worker_id and f[3] == fence then
      call('HSET', K_JOB(id), 'started_at', NOW_S, 'lease_expires_at', lease_until)
      call('ZADD', K_LEASES, lease_until, id)
      out[#out + 1] = id
      for i = 4, #f do
        out[#out + 1] = f[i]
      end
      ids[#ids + 1] = id
    end
  end
  return ids
end
