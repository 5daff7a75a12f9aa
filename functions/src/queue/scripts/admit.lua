-- admit: move up to N users from the head of an event's line into the admitting set.
-- Waiting users not seen for the abandon timeout are skipped and marked expired, so
-- no-shows cannot stall the line. The serving counter advances past everyone who left
-- the line, which is what positions are computed from. A user moves only where core's
-- STEP table allows it; anyone else (already decided, unreadable) just leaves the line.
-- The admission token bucket is written here too, under the same lease check, so an
-- ex-leader that lost its lease mid-tick cannot overwrite the new leader's bucket: the
-- tokens taken for N are in ARGV 6, and those not used (fewer users than N) go back.
-- Only tickets up to the highest one PostgreSQL has recorded as issued are admitted,
-- so a Redis that loses recent writes never hands a ticket that reached the draw to
-- somebody else. Admitted users are tracked in `inflight` until their result lands.
-- Users marked expired wait in `expiring` until the admitter has recorded them in
-- PostgreSQL.
-- Line entries whose user left the line another way (keys.rs LineEntry: the record
-- no longer holds the entry's ticket) are dropped as they are reached.
-- Nobody is taken off the line while the pre-queue shuffle's plan is applied (its
-- steps address line positions): that tick admits nobody and takes no tokens.
-- KEYS: 1 leader, 2 meta, 3 line, 4 users, 5 serving, 6 admitting, 7 stats, 8 bucket,
--       9 inflight, 10 expiring, 11 shuffle plan
-- ARGV: 1 lease value (<instance>|<token>), 2 N, 3 now (Unix s), 4 abandon timeout (s),
--       5 most users to look at (admitted + expired), 6 bucket thousandths of tokens
--       left after taking N, 7 bucket refill time (Unix ms), 8 thousandths one user
--       costs (core's TokenBucket::THOUSANDTHS_PER_USER), 9 highest ticket admissible
-- Returns {status, admitted count, expired count}; status is ok | not_leader |
-- not_admitting.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'not_leader', 0, 0}
end
if not ADMITS[redis.call('HGET', KEYS[2], 'state')] then
  return {'not_admitting', 0, 0}
end
if redis.call('EXISTS', KEYS[11]) == 1 then
  return {'ok', 0, 0}
end
local want = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local abandon = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local highest = tonumber(ARGV[9])
local admitted, expired, looked = 0, 0, 0
local blocked = false
local serving = tonumber(redis.call('GET', KEYS[5]) or '0')
while admitted < want and looked < budget and not blocked do
  local head = redis.call('LRANGE', KEYS[3], 0, 99)
  if #head == 0 then
    break
  end
  local passed = 0
  for i = 1, #head do
    if admitted >= want or looked >= budget then
      break
    end
    local ticket, member, code, seen = read_line_entry(KEYS[4], head[i])
    if ticket and ticket > highest then
      blocked = true
      break
    end
    looked = looked + 1
    passed = passed + 1
    if ticket and ticket > serving then
      serving = ticket
    end
    if code then
      local to = ADMITTED
      if now - tonumber(seen) > abandon then
        to = EXPIRED
      end
      if STEP[code .. to] == MOVED then
        redis.call('HSET', KEYS[4], member, to .. '|' .. ticket .. '|' .. seen)
        if to == ADMITTED then
          redis.call('ZADD', KEYS[6], ticket, member)
          redis.call('ZADD', KEYS[9], now, member)
          admitted = admitted + 1
        else
          redis.call('ZADD', KEYS[10], ticket, member)
          expired = expired + 1
        end
      end
    end
  end
  redis.call('LTRIM', KEYS[3], passed, -1)
end
redis.call('SET', KEYS[5], serving)
redis.call('HSET', KEYS[8], 'milli', string.format('%.0f', tonumber(ARGV[6]) + (want - admitted) * tonumber(ARGV[8])),
  'at_ms', ARGV[7])
if admitted > 0 then
  redis.call('HINCRBY', KEYS[7], 'admitted', admitted)
end
if expired > 0 then
  redis.call('HINCRBY', KEYS[7], 'expired', expired)
end
return {'ok', admitted, expired}
