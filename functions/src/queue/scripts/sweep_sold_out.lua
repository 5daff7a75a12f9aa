-- sweep_sold_out: once an event's stock is gone, tell up to N users still waiting that
-- it is sold out (their record says so; queue-api shows it at the next poll or stream
-- refresh), in bounded steps so Redis never blocks for long. A user moves only where
-- core's STEP table allows it; anyone else just leaves the queue.
-- KEYS: 1 leader, 2 queue, 3 users, 4 serving, 5 stats
-- ARGV: 1 lease value, 2 N
-- Returns the number of users swept (-1 when not the leader).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local head = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local swept = 0
local serving = tonumber(redis.call('GET', KEYS[4]) or '0')
for i = 1, #head, 2 do
  local member, ticket = head[i], tonumber(head[i + 1])
  redis.call('ZREM', KEYS[2], member)
  if ticket > serving then
    serving = ticket
  end
  local record = redis.call('HGET', KEYS[3], member)
  local code, seen = nil, nil
  if record then
    code, seen = string.match(record, '^(%a)|%d+|(%d+)')
  end
  if code and STEP[code .. SOLD_OUT] == MOVED then
    redis.call('HSET', KEYS[3], member, SOLD_OUT .. '|' .. ticket .. '|' .. seen)
    swept = swept + 1
  end
end
redis.call('SET', KEYS[4], serving)
if swept > 0 then
  redis.call('HINCRBY', KEYS[5], 'sold_out_unadmitted', swept)
end
return swept
