-- join_legacy_queue: move the entries of the sorted-set queue older releases kept
-- (member scored by ticket) into the line, in ticket order. During a rolling upgrade
-- older queue-api instances still put users there while newer ones push to the
-- line; both take tickets from the same counter. Only the line's tail from the
-- lowest legacy ticket on is taken off and merged, so each call costs about what
-- arrived since the last one.
-- KEYS: 1 legacy queue, 2 line, 3 shuffle plan
-- Returns the number of entries moved (0 while a shuffle plan is applied: its steps
-- address line positions).
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local legacy = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
if #legacy == 0 then
  return 0
end
local lowest = tonumber(legacy[2])
local tail = {}
while true do
  local last = redis.call('LINDEX', KEYS[2], -1)
  local ticket = last and tonumber(string.match(last, '^(%d+)|'))
  if not ticket or ticket < lowest then
    break
  end
  table.insert(tail, 1, {ticket, last})
  redis.call('RPOP', KEYS[2])
end
local merged = {}
local i, j = 1, 1
while i <= #legacy or j <= #tail do
  local from_legacy = j > #tail
  if i <= #legacy and j <= #tail then
    from_legacy = tonumber(legacy[i + 1]) < tail[j][1]
  end
  if from_legacy then
    merged[#merged + 1] = string.format('%d', tonumber(legacy[i + 1])) .. '|' .. legacy[i]
    i = i + 2
  else
    merged[#merged + 1] = tail[j][2]
    j = j + 1
  end
end
for k = 1, #merged, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(merged, k, math.min(k + 999, #merged)))
end
redis.call('DEL', KEYS[1])
return #legacy / 2
