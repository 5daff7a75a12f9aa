-- draw_limits: write what the admitter needs from the draw side, atomically: the
-- in-flight cap, and the stock left, which only ever goes down (result-relay may
-- already have written a smaller figure from a newer result; reading it and writing
-- back in two steps could raise it in between).
-- KEYS: 1 meta
-- ARGV: 1 max in flight, 2 stock left
-- Returns the stock left now stored.
redis.call('HSET', KEYS[1], 'max_in_flight', ARGV[1])
local known = tonumber(redis.call('HGET', KEYS[1], 'stock_left'))
local stock_left = tonumber(ARGV[2])
if known == nil or stock_left < known then
  redis.call('HSET', KEYS[1], 'stock_left', ARGV[2])
  return stock_left
end
return known
