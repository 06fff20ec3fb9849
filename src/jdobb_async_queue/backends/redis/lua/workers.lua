-- workers: the worker registry. Entries (`workers`: id -> the worker's record as JSON, without
-- its heartbeat) and heartbeats (`heartbeats`: id -> the store's time of the last one); an
-- entry whose heartbeat is more than WORKER_TTL seconds old is dead and deleted here.
-- ARGV: now, op ('register', 'remove' or 'list'), then for register: id, record JSON; for
--   remove: id.
-- Returns for list: {id, record JSON, heartbeat, ...} of the live workers; else 1.

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
