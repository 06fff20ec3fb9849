-- get: one job as JobRecord JSON, or nil if unknown or expired.
-- ARGV: now, job id.

local id = ARGV[2]
if not alive_status(id) then
  return false
end
return record_json(id)
