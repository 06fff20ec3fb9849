-- finish_many: apply decided outcomes (see `_policy`) to PROCESSING jobs whose fence matches.
-- ARGV: now, resend flag and call token, count, then per outcome: job id, kind
--   (complete/retry/fail/release), fence?, results? (JSON), error?, delay (seconds, for retry).
-- Returns one 0/1 per outcome.

local EVENTS = {complete = 'complete', retry = 'retry_later', fail = 'fail', release = 'release'}

local function finish(id, kind, fence, results, err, delay)
  local f = load(id, kind == 'complete' and ENDING or FIELDS)
  if not held(f, fence, EVENTS[kind]) then
    return RESENT and f and changed_by_first_attempt(id, fence) and 1 or 0
  end
  local op = {'op', OP} -- marks the job as changed by this call, in the same HSET (`mark`)
  if kind == 'complete' then
    extend(op, {'progress', '1.0'})
    if results then
      extend(op, {'results', results})
    end
    end_job(id, f, 'complete', op, {'error'})
  elseif kind == 'release' then
    call('HDEL', K_JOB(id), 'message', 'started_at')
    requeue(id, f, nil, extend(op, {'attempts', tonumber(f.attempts) - 1, 'progress', '0.0'}))
  elseif kind == 'retry' then
    if not err then
      call('HDEL', K_JOB(id), 'error')
    end
    requeue(id, f, fmt(NOW + delay), extend(op, err and {'error', err} or nil))
  else
    end_job(id, f, 'failed', extend(op, err and {'error', err} or nil),
      not err and {'error'} or nil)
  end
  return 1
end

local done, at = {}, 4
for i = 1, tonumber(ARGV[3]) do
  done[i] = finish(ARGV[at], ARGV[at + 1], opt(ARGV[at + 2]), opt(ARGV[at + 3]),
    opt(ARGV[at + 4]), tonumber(ARGV[at + 5]))
  at = at + 6
end
wake_workers()
return done
