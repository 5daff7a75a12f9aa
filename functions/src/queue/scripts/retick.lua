-- retick: give queued users new tickets (the randomized pre-queue's shuffle at open).
-- Only users still waiting in the queue are moved; anyone else is left alone.
-- KEYS: 1 queue, 2 users
-- ARGV: member1, ticket1, member2, ticket2, ...
-- Returns the number of users moved.
local moved = 0
for i = 1, #ARGV, 2 do
  local member, ticket = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[1], member) then
    local record = redis.call('HGET', KEYS[2], member)
    local code, rest = string.match(record or '', '^(%a)|%d+(|.*)$')
    if code == WAITING then
      redis.call('ZADD', KEYS[1], ticket, member)
      redis.call('HSET', KEYS[2], member, code .. '|' .. ticket .. rest)
      moved = moved + 1
    end
  end
end
return moved
