-- sweep: tell users still in line that their wait is over without a draw: the stock
-- is gone (sold out) or the event is closing (closed). The admitter first records the
-- very users it passes here in PostgreSQL, so the database knows each answer before
-- the user can hear it. A user moves only where core's STEP table allows it; anyone
-- else (admitted meanwhile, already decided) just leaves the queue.
-- KEYS: 1 leader, 2 queue, 3 users, 4 serving, 5 stats
-- ARGV: 1 lease value, 2 state code to give, 3 stats counter, 4.. members
-- Returns the number of users moved (-1 when not the leader).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local to = ARGV[2]
local swept = 0
local serving = tonumber(redis.call('GET', KEYS[4]) or '0')
for i = 4, #ARGV do
  local member = ARGV[i]
  local ticket = redis.call('ZSCORE', KEYS[2], member)
  if ticket then
    ticket = tonumber(ticket)
    redis.call('ZREM', KEYS[2], member)
    if ticket > serving then
      serving = ticket
    end
    local record = redis.call('HGET', KEYS[3], member)
    local code, seen = nil, nil
    if record then
      code, seen = string.match(record, '^(%a)|%d+|(%d+)')
    end
    if code and STEP[code .. to] == MOVED then
      redis.call('HSET', KEYS[3], member, to .. '|' .. string.format('%d', ticket) .. '|' .. seen)
      swept = swept + 1
    end
  end
end
redis.call('SET', KEYS[4], string.format('%d', serving))
if swept > 0 then
  redis.call('HINCRBY', KEYS[5], ARGV[3], swept)
end
return swept
