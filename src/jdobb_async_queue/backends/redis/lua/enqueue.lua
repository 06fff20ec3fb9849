-- enqueue_many: store new PENDING jobs, all or nothing.
-- ARGV: now, resend flag and call token, count, then per record:
--   id, spec (JSON), ENQUEUE_ARGS (generated from `codec.ENQUEUE_ARGS`: the rank and the fields
--   the hash keeps besides the spec, optional ones as '' or '=' .. value; execute_at on the
--   caller's clock; read by `enqueue_record`, generated too), number of dependencies, followed
--   by that many dependency ids.
-- Returns {'ok', id...} (a held unique key gives its holder's id), {'duplicate', id} or
-- {'unknown', id...}; nothing is stored unless 'ok'.

local function read_records()
  local records, at = {}, 4
  for _ = 1, tonumber(ARGV[3]) do
    local r = enqueue_record(at)
    at = at + 2 + #ENQUEUE_ARGS
    r.execute_at = to_store(r.execute_at)
    local n = tonumber(ARGV[at])
    for j = 1, n do
      r.deps[j] = ARGV[at + j]
    end
    at = at + 1 + n
    records[#records + 1] = r
  end
  return records
end

-- The answer of an earlier attempt of this very call, if it ran (its specs are stored).
local function replay(records)
  local stored, any = {}, false
  for i, r in ipairs(records) do
    stored[i] = call('HGET', K_JOB(r.id), 'spec') == r.spec
    any = any or stored[i]
  end
  if not any then
    return nil
  end
  local ids, keys = {'ok'}, {}
  for i, r in ipairs(records) do
    local id = r.id
    if stored[i] then
      if r.unique_key then
        keys[r.unique_key] = r.id
      end
    elseif r.unique_key then
      id = keys[r.unique_key] or call('HGET', K_UNIQUE, r.unique_key) or r.id
    end
    ids[#ids + 1] = id
  end
  return ids
end

-- Check the batch, changing nothing but expired jobs: ids, unique keys, dependencies.
local function admit(records)
  local ids, fresh, alias, batch_ids, keys = {'ok'}, {}, {}, {}, {}
  for _, r in ipairs(records) do
    if batch_ids[r.id] then
      return {'duplicate', r.id}
    end
    local f = call('HMGET', K_JOB(r.id), 'status', 'expires_at')
    if f[1] then
      if not expired(f[2]) then
        return {'duplicate', r.id}
      end
      delete_job(r.id, f[1]) -- gone already: its id is free
    end
    batch_ids[r.id] = true
    local holder = r.unique_key and (keys[r.unique_key] or call('HGET', K_UNIQUE, r.unique_key))
    if holder then
      alias[r.id] = holder
      ids[#ids + 1] = holder
    else
      local unknown = {'unknown'}
      for j, dep in ipairs(r.deps) do
        dep = alias[dep] or dep
        r.deps[j] = dep
        if not batch_ids[dep] and not alive_status(dep) then
          unknown[#unknown + 1] = dep
        end
      end
      if #unknown > 1 then
        return unknown
      end
      if r.unique_key then
        keys[r.unique_key] = r.id
      end
      ids[#ids + 1] = r.id
      fresh[#fresh + 1] = r
    end
  end
  return ids, fresh
end

local function store(r)
  local key = K_JOB(r.id)
  r.seq = next_seq()
  local n, broken, broken_status = count_deps(r.id, r.seq, r.deps, false)
  r.pending_deps = n
  local fields = {'spec', r.spec, 'seq', r.seq, 'pending_deps', n, 'updated_at', NOW_S,
    unpack(NEW_JOB)}
  for _, name in ipairs(ENQUEUE_ARGS) do
    if r[name] then
      fields[#fields + 1] = name
      fields[#fields + 1] = r[name]
    end
  end
  if #r.deps > 0 then
    extend(fields, {'deps', cjson.encode(r.deps)})
  end
  if r.unique_key then
    call('HSET', K_UNIQUE, r.unique_key, r.id)
  end
  call('ZADD', K_STATUS('pending'), r.seq, r.id)
  if broken then
    call('HSET', key, unpack(fields))
    local f = {status = 'pending', ttl = r.ttl, unique_key = r.unique_key}
    end_job(r.id, f, 'cancelled', {'error', dependency_error(broken, broken_status)})
  else
    r.where = index(r.id, r)
    extend(fields, {'where', r.where})
    call('HSET', key, unpack(fields))
  end
end

-- Hand the new claimable jobs to parked workers (lib.lua). If that took all of them, and none
-- was scheduled (idle workers must learn of a new due time), no notice is needed.
local function hand_off_fresh(fresh)
  local ready, scheduled = {}, false
  for _, r in ipairs(fresh) do
    if r.where == 'ready' then
      ready[r.job_type] = true
    end
    scheduled = scheduled or r.where == 'scheduled'
  end
  local left = false
  for job_type in pairs(ready) do
    left = hand_off(job_type) or left
  end
  return left or scheduled
end

local records = read_records()
if RESENT then
  local ids = replay(records)
  if ids then
    return ids
  end
end
local ids, fresh = admit(records)
if fresh then
  for _, r in ipairs(fresh) do
    store(r)
  end
  woke = woke and hand_off_fresh(fresh)
  wake_workers()
end
return ids
