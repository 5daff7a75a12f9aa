-- sweep: tell users still in line that their wait is over without a draw: the stock
-- is gone (sold out) or the event is closing (closed). The caller passes the entries
-- it read at the head of the line and first records their users in PostgreSQL, so
-- the database knows each answer before the user can hear it. Only the head entries
-- that are still the ones passed leave the line: a line changed meanwhile loses
-- nobody who was not recorded. A user moves only where core's STEP table allows it;
-- anyone else (admitted meanwhile, already decided, a stale entry) just leaves.
-- Nobody is swept while the pre-queue shuffle's plan is applied (its steps address
-- line positions).
-- KEYS: 1 leader, 2 line, 3 users, 4 serving, 5 stats, 6 shuffle plan
-- ARGV: 1 lease value, 2 state code to give, 3 stats counter, 4.. line entries as read
-- Returns the number of users moved (-1 when not the leader).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if #ARGV < 4 or redis.call('EXISTS', KEYS[6]) == 1 then
  return 0
end
local to = ARGV[2]
local swept = 0
local serving = tonumber(redis.call('GET', KEYS[4]) or '0')
local head = redis.call('LRANGE', KEYS[2], 0, #ARGV - 4)
local passed = 0
for i = 1, #head do
  if head[i] ~= ARGV[i + 3] then
    break
  end
  passed = i
  local ticket, member, code, seen = read_line_entry(KEYS[3], head[i])
  if ticket and ticket > serving then
    serving = ticket
  end
  if code and STEP[code .. to] == MOVED then
    redis.call('HSET', KEYS[3], member, to .. '|' .. string.format('%d', ticket) .. '|' .. seen)
    swept = swept + 1
  end
end
redis.call('LTRIM', KEYS[2], passed, -1)
redis.call('SET', KEYS[4], string.format('%d', serving))
if swept > 0 then
  redis.call('HINCRBY', KEYS[5], ARGV[3], swept)
end
return swept
