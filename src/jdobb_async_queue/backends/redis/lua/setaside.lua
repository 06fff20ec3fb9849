-- set_aside: a job whose stored record cannot be decoded leaves the queue: its hash is renamed
-- to `corrupt:<id>` (kept for inspection), it leaves every index, its unique key is freed,
-- jobs waiting on it are cancelled, and its subscribers are told it is gone.
-- ARGV: now, job id.
-- Returns 1, or 0 if there is no such job.

local id = ARGV[2]
local f = load(id)
if not f then
  return 0
end
if f.status == 'processing' then
  call('ZREM', K_LEASES, id)
elseif f.status == 'pending' then
  unindex(id, f)
end
call('ZREM', K_STATUS(f.status), id)
call('ZREM', K_EXPIRY(f.status), id)
if f.unique_key and call('HGET', K_UNIQUE, f.unique_key) == id then
  call('HDEL', K_UNIQUE, f.unique_key)
end
local orphans = {}
if f.dependents then
  orphans = waiting_dependents(id)
end
call('DEL', K_DEPS(id))
call('RENAME', K_JOB(id), K_CORRUPT(id))
publish_gone(id)
local reason = {'error', dependency_error(id, 'deleted')}
for _, dep in ipairs(orphans) do
  local g = load(dep, ENDING)
  if g and g.status == 'pending' then
    end_job(dep, g, 'cancelled', reason)
  end
end
wake_workers()
return 1
