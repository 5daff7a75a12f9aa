-- finished: whether an event needs no admitter ticks any more. Nobody enters a closed
-- or sold-out event, so once nobody is left to publish (admitting), to tell (line),
-- to send to the draw again (inflight: a result may never land) or to record
-- (expiring), no tick can change anything for it again.
-- A line of stale entries only is not finished yet: the sweep drops them first.
-- KEYS: 1 meta, 2 line, 3 admitting, 4 inflight, 5 expiring
-- Returns 1 when finished, else 0.
if redis.call('LLEN', KEYS[2]) > 0 then
  return 0
end
for i = 3, 5 do
  if redis.call('ZCARD', KEYS[i]) > 0 then
    return 0
  end
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == EVENT_CLOSED or state == EVENT_SOLD_OUT then
  return 1
end
return 0
