-- update_progress_many: set progress and/or message of PROCESSING jobs whose fence matches.
-- ARGV: now, count, then per update: job id, fence?, progress?, message?
-- Returns one 0/1 per update.

local done, at = {}, 3
for i = 1, tonumber(ARGV[2]) do
  local id, fence, progress, message = ARGV[at], opt(ARGV[at + 1]), opt(ARGV[at + 2]),
    opt(ARGV[at + 3])
  at = at + 4
  local f = call('HMGET', K_JOB(id), 'status', 'fence')
  if f[1] == 'processing' and (not fence or f[2] == fence) then
    local fields = {'updated_at', NOW_S}
    if progress then
      extend(fields, {'progress', progress})
    end
    if message then
      extend(fields, {'message', message})
    end
    call('HSET', K_JOB(id), unpack(fields))
    call('HINCRBY', K_JOB(id), 'update_seq', 1)
    call('ZADD', K_STATUS('processing'), next_seq(), id)
    publish_update(id)
    done[i] = 1
  else
    done[i] = 0
  end
end
return done
