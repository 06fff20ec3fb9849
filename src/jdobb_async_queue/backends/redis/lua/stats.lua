-- stats: counts by status, then scheduled (pending, not yet due) and waiting (on dependencies),
-- expired jobs left out.
-- ARGV: now.
-- Returns {pending, processing, complete, failed, cancelled, scheduled, waiting}.

expire_some(100)
local counts = {}
for i, status in ipairs(STATUSES) do
  counts[i] = call('ZCARD', K_STATUS(status))
  if IS_TERMINAL[status] then
    counts[i] = counts[i] - call('ZCOUNT', K_EXPIRY(status), '-inf', NOW_S)
  end
end
counts[#counts + 1] = call('ZCOUNT', K_SCHEDULED, '(' .. NOW_S, '+inf')
counts[#counts + 1] = call('ZCARD', K_WAITING)
return counts
