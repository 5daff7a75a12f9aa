-- raise_seq: lift an event's ticket counter to at least a given value (never lower
-- it), after a Redis that lost recent writes came back with an older counter.
-- KEYS: 1 seq
-- ARGV: 1 the lowest value the counter may hold
-- Returns the counter afterwards.
local floor = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < floor then
  redis.call('SET', KEYS[1], ARGV[1])
  return floor
end
return current
