-- correct_state: the leader brings the Redis mirror of an event's state in line with
-- PostgreSQL's (the authority), e.g. after `dropgate event close` could not reach
-- Redis. Only the lease holder writes, and only over the state it read: a change an
-- operator mirrored in between is newer than what the leader read from PostgreSQL,
-- so it stands until the next tick compares again.
-- KEYS: 1 leader, 2 meta
-- ARGV: 1 lease value, 2 the state the leader saw in Redis ('' for none), 3 the state
--       PostgreSQL holds
-- Returns 1 when written, 0 when Redis changed meanwhile, -1 when not the leader.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if (redis.call('HGET', KEYS[2], 'state') or '') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[2], 'state', ARGV[3])
return 1
