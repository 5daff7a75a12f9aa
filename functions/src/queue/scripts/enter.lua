-- enter: put a user in an event's line, or return the place they already have.
-- KEYS: 1 meta, 2 seq, 3 line, 4 users, 5 serving
-- (How many entered is seq itself: every new entry takes the next ticket, so no
-- separate counter is written on the hottest path.)
-- ARGV: 1 member (<platform>:<user>), 2 now (Unix s), 3 the member's platform
-- Returns {outcome, record, serving, rate, event state, abandon timeout (ms), stock
-- left}; outcome is one of
-- new | existing | unknown_event | platform_not_allowed | not_accepting (the event
-- state says why).
local meta = redis.call('HMGET', KEYS[1], 'state', 'rate', 'abandon_ms', 'stock_left', 'platforms')
local state, rate, abandon, stock = meta[1], meta[2], meta[3] or '', meta[4] or ''
if not state then
  return {'unknown_event', '', '0', '0', '', '', ''}
end
-- platforms: the allowed platform ids joined by commas (ids never contain one);
-- absent when every platform may enter.
local platforms = meta[5]
if platforms and not string.find(',' .. platforms .. ',', ',' .. ARGV[3] .. ',', 1, true) then
  return {'platform_not_allowed', '', '0', '0', state, '', ''}
end
local serving = redis.call('GET', KEYS[5]) or '0'
local record = redis.call('HGET', KEYS[4], ARGV[1])
if record then
  return {'existing', record, serving, rate, state, abandon, stock}
end
if not ACCEPTS_ENTRIES[state] then
  return {'not_accepting', '', serving, rate, state, abandon, stock}
end
local ticket = redis.call('INCR', KEYS[2])
-- Ticket and push in one step: the line's order is the ticket order.
redis.call('RPUSH', KEYS[3], ticket .. '|' .. ARGV[1])
record = WAITING .. '|' .. ticket .. '|' .. ARGV[2]
redis.call('HSET', KEYS[4], ARGV[1], record)
return {'new', record, serving, rate, state, abandon, stock}
