-- lease: take or renew an event's admitter lease. Exactly one admitter holds it; the
-- fencing token grows with every new holder, and the admit script refuses any caller
-- whose token is not the current one, so a paused ex-leader cannot admit anybody.
-- KEYS: 1 leader, 2 fence
-- ARGV: 1 instance id, 2 lease ms
-- Returns the fencing token held (> 0), or 0 when another instance holds the lease.
local held = redis.call('GET', KEYS[1])
if held then
  local owner, token = string.match(held, '^(.+)|(%d+)$')
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(token)
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
