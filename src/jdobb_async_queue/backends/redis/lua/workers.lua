-- workers: the worker registry. Entries (`workers`: id -> the worker's record as JSON, without
-- its heartbeat) and heartbeats (`heartbeats`: id -> the store's time of the last one); an
-- entry whose heartbeat is more than WORKER_TTL seconds old is dead and deleted here.
-- ARGV: now, op ('register', 'remove' or 'list'), then for register: id, record JSON; for
--   remove: id, then the hand-offs it received since its last claim ('<fence>|<id>').
-- Returns for list: {id, record JSON, heartbeat, ...} of the live workers; else 1.
-- Removing a worker also unparks it and hands back (PENDING, due at once, the attempt not
-- counted) the jobs handed to it that it never received: it has stopped, so no handler of
-- its will run them.

-- Hand back what was handed to `worker_id` and not confirmed by `received` (a set).
local function hand_back(worker_id, received)
  local handed = K_HANDED(worker_id)
  for _, member in ipairs(call('SMEMBERS', handed)) do
    local bar = string.find(member, '|', 1, true)
    local fence, id = string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
    local f = load(id)
    if not received[member] and held(f, fence, 'release')
      and call('HGET', K_JOB(id), 'worker_id') == worker_id then
      call('HDEL', K_JOB(id), 'message', 'started_at')
      requeue(id, f, nil, {'attempts', tonumber(f.attempts) - 1, 'progress', '0.0'})
    end
  end
  call('DEL', handed)
end

local op = ARGV[2]
local dead = call('ZRANGEBYSCORE', K_HEARTBEATS, '-inf', '(' .. fmt(NOW - WORKER_TTL))
if #dead > 0 then
  call('ZREM', K_HEARTBEATS, unpack(dead))
  call('HDEL', K_WORKERS, unpack(dead))
end
if op == 'register' then
  call('HSET', K_WORKERS, ARGV[3], ARGV[4])
  call('ZADD', K_HEARTBEATS, NOW_S, ARGV[3])
  return 1
elseif op == 'remove' then
  call('HDEL', K_WORKERS, ARGV[3])
  call('ZREM', K_HEARTBEATS, ARGV[3])
  unpark(ARGV[3])
  local received = {}
  for i = 4, #ARGV do
    received[ARGV[i]] = true
  end
  hand_back(ARGV[3], received)
  wake_workers()
  return 1
end
local seen = call('ZRANGE', K_HEARTBEATS, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #seen, 2 do
  local record = call('HGET', K_WORKERS, seen[i])
  if record then
    out[#out + 1] = seen[i]
    out[#out + 1] = record
    out[#out + 1] = seen[i + 1]
  end
end
return out
