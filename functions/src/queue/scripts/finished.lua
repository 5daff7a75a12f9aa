-- finished: whether an event needs no admitter ticks any more. Nobody enters a closed
-- or sold-out event, so once nobody is left to publish (admitting) and nobody is left
-- to tell (queue), no tick can change anything for it again.
-- KEYS: 1 meta, 2 queue, 3 admitting
-- Returns 1 when finished, else 0.
if redis.call('ZCARD', KEYS[3]) > 0 then
  return 0
end
local state = redis.call('HGET', KEYS[1], 'state')
if (state == EVENT_CLOSED or state == EVENT_SOLD_OUT) and redis.call('ZCARD', KEYS[2]) == 0 then
  return 1
end
return 0
