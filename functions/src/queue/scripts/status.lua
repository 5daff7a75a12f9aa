-- status: read a user's record and the serving counter, and refresh the user's
-- last-seen time (a poll or an open stream proves the user is still there).
-- KEYS: 1 meta, 2 users, 3 serving
-- ARGV: 1 member, 2 now (Unix s)
-- Returns {outcome, record, serving, rate, event state, abandon timeout (ms), stock
-- left}; outcome is one of
-- found | not_entered | unknown_event.
local meta = redis.call('HMGET', KEYS[1], 'state', 'rate', 'abandon_ms', 'stock_left')
local state, rate, abandon, stock = meta[1], meta[2], meta[3] or '', meta[4] or ''
if not state then
  return {'unknown_event', '', '0', '0', '', '', ''}
end
local serving = redis.call('GET', KEYS[3]) or '0'
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then
  return {'not_entered', '', serving, rate, state, abandon, stock}
end
local code, ticket, seen, rest = string.match(record, '^(%a)|(%d+)|(%d+)(.*)$')
if code == WAITING and seen and tonumber(ARGV[2]) > tonumber(seen) then
  record = code .. '|' .. ticket .. '|' .. ARGV[2] .. rest
  redis.call('HSET', KEYS[2], ARGV[1], record)
end
return {'found', record, serving, rate, state, abandon, stock}
