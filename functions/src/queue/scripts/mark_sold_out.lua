-- mark_sold_out: the leader records that an event's stock is gone. Only the lease
-- holder writes (an ex-leader that lost its lease mid-tick is refused), and only from
-- a state core's EventState::may_sell_out allows (MAY_SELL_OUT).
-- KEYS: 1 leader, 2 meta
-- ARGV: 1 lease value (<instance>|<token>)
-- Returns 1 when the event became sold out, 0 when its state does not allow it, -1
-- when the caller does not hold the lease.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if MAY_SELL_OUT[redis.call('HGET', KEYS[2], 'state')] then
  redis.call('HSET', KEYS[2], 'state', EVENT_SOLD_OUT)
  return 1
end
return 0
