-- next_due: the earliest due time of a scheduled job after now (of any type: waking early for
-- another type's job is harmless), and the store's now.
-- ARGV: now.
-- Returns {due or false, now}.

local head = call('ZRANGEBYSCORE', K_SCHEDULED, '(' .. NOW_S, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
return {head[2] or false, NOW_S}
