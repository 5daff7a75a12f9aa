-- retick: apply the next steps of the pre-queue shuffle's plan. Each step gives the
-- line position that held a ticket to the member the shuffle drew for that ticket,
-- and the member's record the ticket if they still wait. A step and its removal from
-- the plan are one script, so a shuffle cut short resumes where it stopped and every
-- step is applied once. Nobody takes users off the line while a plan exists (admit
-- and sweep wait), so positions hold; a step whose position no longer holds its
-- ticket fails the whole call before anything is written.
-- The last step marks the line shuffled, so no later plan reorders it again.
-- KEYS: 1 line, 2 users, 3 plan, 4 shuffled mark
-- ARGV: 1 most steps to apply
-- Returns {users moved, steps left in the plan}.
local plan = redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[1]) - 1)
local steps = {}
for i, text in ipairs(plan) do
  local position, ticket, member = string.match(text, '^(%d+)|(%d+)|(.+)$')
  if not position then
    return redis.error_reply('unreadable shuffle step: ' .. text)
  end
  local held = redis.call('LINDEX', KEYS[1], position)
  if not held or string.sub(held, 1, #ticket + 1) ~= ticket .. '|' then
    return redis.error_reply('the line changed under the shuffle: position ' .. position .. ' no longer holds ticket ' .. ticket)
  end
  steps[i] = {position, ticket, member}
end
local moved = 0
for _, step in ipairs(steps) do
  local position, ticket, member = step[1], step[2], step[3]
  redis.call('LSET', KEYS[1], position, ticket .. '|' .. member)
  local record = redis.call('HGET', KEYS[2], member)
  local code, rest = string.match(record or '', '^(%a)|%d+(|.*)$')
  if code == WAITING then
    redis.call('HSET', KEYS[2], member, code .. '|' .. ticket .. rest)
    moved = moved + 1
  end
end
redis.call('LTRIM', KEYS[3], #plan, -1)
local left = redis.call('LLEN', KEYS[3])
if left == 0 then
  redis.call('SET', KEYS[4], '1')
end
return {moved, left}
