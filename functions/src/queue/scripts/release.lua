-- release: give up an event's admitter lease, only if the caller still holds it.
-- KEYS: 1 leader
-- ARGV: 1 lease value (<instance>|<token>)
-- Returns 1 when released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
