-- install_shuffle_plan: make a staged pre-queue shuffle plan the event's plan, unless
-- a plan is already being applied or the line was shuffled already. A line is
-- shuffled once: a second plan, drawn from a line the first had already reordered,
-- would give an order nobody could re-derive from the event's seed.
-- KEYS: 1 staging list, 2 plan, 3 shuffled mark
-- Returns 1 when the staged plan became the plan, else 0 (the staging list is gone
-- either way).
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
return 1
