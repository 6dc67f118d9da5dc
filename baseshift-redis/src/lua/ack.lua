-- outbox_ack. KEYS: outbox. ARGV: the seqs to remove, ascending, each once.
-- When they are consecutive and the first is the outbox's oldest entry (the relay
-- acknowledging what it read from the head), every entry below the last + 1 is one of
-- them: XTRIM MINID drops them whole listpack nodes at a time. Otherwise XDEL by id.
-- Reply: how many entries were removed.
local n = #ARGV
local lo, hi = tonumber(ARGV[1]), tonumber(ARGV[n])
if hi - lo + 1 == n then
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  if head and head[1] == '0-' .. ARGV[1] then
    return redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. string.format('%d', hi + 1))
  end
end
local removed = 0
for i = 1, n, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, n) do
    ids[#ids + 1] = '0-' .. ARGV[j]
  end
  removed = removed + redis.call('XDEL', KEYS[1], unpack(ids))
end
return removed
