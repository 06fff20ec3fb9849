-- list_jobs: jobs with this status (any, if none) and job type, expired ones left out.
-- PENDING jobs come in claim order (claimable by priority then age, then scheduled ones by due
-- time, then those waiting on dependencies); other statuses most recently updated first.
-- ARGV: now, status?, job_type?, limit, offset.
-- Returns each job's id then its JobRecord JSON (decoded one by one: a corrupt record is set
-- aside without losing the others).

local status, job_type = opt(ARGV[2]), opt(ARGV[3])
local limit, offset = tonumber(ARGV[4]), tonumber(ARGV[5])
local CHUNK = 100

-- An iterator over one zset in score order: each call returns score, member (nil at the end).
local function scan(key, descending)
  local buf, pos, start, finished = {}, 1, 0, false
  return function()
    if pos > #buf then
      if finished then
        return nil
      end
      local command = descending and 'ZREVRANGE' or 'ZRANGE'
      local raw = call(command, key, start, start + CHUNK - 1, 'WITHSCORES')
      start = start + CHUNK
      finished = #raw < 2 * CHUNK
      buf, pos = {}, 1
      for i = 1, #raw, 2 do
        buf[#buf + 1] = {tonumber(raw[i + 1]), raw[i]}
      end
      if #buf == 0 then
        return nil
      end
    end
    local item = buf[pos]
    pos = pos + 1
    return item[1], item[2]
  end
end

-- Several iterators merged by score.
local function merge(iterators, descending)
  local heads = {}
  for i, it in ipairs(iterators) do
    heads[i] = {it()}
  end
  return function()
    local best = nil
    for i, head in ipairs(heads) do
      if head[1] and (not best or (descending and head[1] > heads[best][1])
          or (not descending and head[1] < heads[best][1])) then
        best = i
      end
    end
    if not best then
      return nil
    end
    local score, member = heads[best][1], heads[best][2]
    heads[best] = {iterators[best]()}
    return score, member
  end
end

local function ids_of(iterator, to_id)
  return function()
    local score, member = iterator()
    if not score then
      return nil
    end
    return to_id and to_id(member) or member
  end
end

local function chain(iterators)
  local i = 1
  return function()
    while iterators[i] do
      local id = iterators[i]()
      if id then
        return id
      end
      i = i + 1
    end
    return nil
  end
end

local function of_type(id)
  return not job_type or call('HGET', K_JOB(id), 'job_type') == job_type
end

local function collect(next_id, check)
  local out, skipped, taken = {}, 0, 0
  while taken < limit do
    local id = next_id()
    if not id then
      break
    end
    if check(id) then
      if skipped < offset then
        skipped = skipped + 1
      else
        out[#out + 1] = id
        out[#out + 1] = record_json(id)
        taken = taken + 1
      end
    end
  end
  return out
end

local function scheduled_id(member)
  return string.sub(member, SCHED_ID_AT)
end

local function pending_in_claim_order()
  local ready
  if job_type then
    ready = ids_of(scan(K_READY(job_type), false))
  else
    local iterators = {}
    for i, t in ipairs(call('SMEMBERS', K_TYPES)) do
      iterators[i] = scan(K_READY(t), false)
    end
    ready = ids_of(merge(iterators, false))
  end
  return chain({ready, ids_of(scan(K_SCHEDULED, false), scheduled_id),
    ids_of(scan(K_WAITING, false))})
end

local function alive_of_type(id)
  return alive_status(id) and of_type(id)
end

if limit <= 0 then
  return {}
end
if status == 'pending' then
  promote(1000)
  return collect(pending_in_claim_order(), of_type)
end
if status then
  return collect(ids_of(scan(K_STATUS(status), true)), alive_of_type)
end
local iterators = {}
for i, s in ipairs(STATUSES) do
  iterators[i] = scan(K_STATUS(s), true)
end
return collect(ids_of(merge(iterators, true)), alive_of_type)
