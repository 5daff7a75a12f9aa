-- apply_result: write one draw result into the user's record, exactly once. What a
-- record may become is core's RECORD_OUTCOME table: a record not yet final takes the
-- outcome (the draw is recorded, so it is the authority), the same outcome again is a
-- redelivery, and another final state stands. A correction (the admitter telling a
-- user the answer it just read back from PostgreSQL) follows CORRECT_TO instead: the
-- recorded answer replaces a final state Redis wrote without recording it.
-- KEYS: 1 users, 2 stats, 3 meta, 4 inflight
-- A user drawn while Redis still had them waiting keeps their line entry: with the
-- ticket it holds no longer waiting, the entry is stale and the admitter drops it.
-- ARGV: 1 member, 2 state code of the outcome, 3 ticket, 4 last seen (Unix s, used
--       only when the record is missing), 5 decision order, 6 decided at (Unix ms),
--       7 stats counter (the outcome's name), 8 stock left, 9 channel, 10 notice,
--       11 '1' for a correction, else '0'
-- Returns {outcome, previous record or '', stock reached 0 now (1 | 0)}; outcome is
-- one of applied | duplicate | conflict.

-- Stock only ever shrinks: results arrive from several partitions in any order, so
-- an older, larger count must not undo a newer one.
local stock_left = tonumber(ARGV[8])
local sold_out_now = 0
local known = tonumber(redis.call('HGET', KEYS[3], 'stock_left'))
if known == nil or stock_left < known then
  redis.call('HSET', KEYS[3], 'stock_left', ARGV[8])
  if stock_left == 0 then
    sold_out_now = 1
  end
end

-- Decided, whatever the record says: no longer waiting for a result.
redis.call('ZREM', KEYS[4], ARGV[1])

local previous = redis.call('HGET', KEYS[1], ARGV[1])
local ticket, seen, code = ARGV[3], ARGV[4], nil
if previous then
  local t, s
  code, t, s = string.match(previous, '^(%a)|(%d+)|(%d+)')
  if code then
    local step
    if ARGV[11] == '1' then
      step = CORRECT_TO[code .. ARGV[2]]
    else
      step = RECORD_OUTCOME[code .. ARGV[2]]
    end
    if step == REPEATED then
      -- A redelivery: the user already knows; nothing to count or announce again.
      return {'duplicate', previous, sold_out_now}
    end
    if step ~= MOVED then
      -- A final state is never overwritten; the first outcome stands.
      return {'conflict', previous, sold_out_now}
    end
    -- The ticket the draw recorded: a user whose entry Redis lost and who entered
    -- again holds a newer one that never reached the draw.
    seen = s
  end
  -- An unreadable record is rebuilt from the result: the draw is the authority.
end

redis.call('HSET', KEYS[1], ARGV[1],
  ARGV[2] .. '|' .. ticket .. '|' .. seen .. '|' .. ARGV[5] .. '|' .. ARGV[6])
redis.call('HINCRBY', KEYS[2], ARGV[7], 1)
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {'applied', previous or '', sold_out_now}
