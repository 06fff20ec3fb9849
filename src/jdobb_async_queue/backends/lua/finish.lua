-- finish_many: apply outcomes to PROCESSING jobs whose fence matches.
-- ARGV: now, resend (0/1), count, then per outcome: job id, kind (complete/fail/release),
--   fence?, results? (JSON), error?, retry (0/1), jitter.
-- Returns one 0/1 per outcome.

local function fail(id, f, err, retry, jitter)
  local attempts = tonumber(f.attempts)
  local fields = err and {'error', err} or nil
  if retry and attempts <= tonumber(f.max_retries) then
    local base = math.min(tonumber(f.retry_delay) * 2 ^ math.max(attempts - 1, 0), MAX_BACKOFF)
    if not err then
      call('HDEL', K_JOB(id), 'error')
    end
    requeue(id, f, fmt(NOW + base * (1.0 + BACKOFF_JITTER * jitter)), fields)
  else
    end_job(id, f, 'failed', fields, not err and {'error'} or nil)
  end
end

local function finish(id, kind, fence, results, err, retry, jitter)
  local f = load(id, kind == 'complete' and ENDING or FIELDS)
  if not held(f, fence, kind) then
    return ARGV[2] == '1' and f and changed_by_first_attempt(id, fence) and 1 or 0
  end
  if kind == 'complete' then
    local fields = {'progress', '1.0'}
    if results then
      extend(fields, {'results', results})
    end
    end_job(id, f, 'complete', fields, {'error'})
  elseif kind == 'release' then
    requeue(id, f, nil, {'attempts', tonumber(f.attempts) - 1})
  else
    fail(id, f, err, retry, jitter)
  end
  return 1
end

local done, at = {}, 4
for i = 1, tonumber(ARGV[3]) do
  done[i] = finish(ARGV[at], ARGV[at + 1], opt(ARGV[at + 2]), opt(ARGV[at + 3]),
    opt(ARGV[at + 4]), ARGV[at + 5] == '1', tonumber(ARGV[at + 6]))
  at = at + 7
end
wake_workers()
return done
