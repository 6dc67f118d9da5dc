-- Reads job records with their outputs. KEYS: wf, jobs, out.
-- ARGV: 'all' (every job, in template order) or 'some' followed by job ids.
-- Reply: false if the workflow is absent, else {id 1, record 1, output 1, ...} (absent jobs left out).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local ids
if ARGV[1] == 'all' then
  ids = cjson.decode(redis.call('HGET', KEYS[1], 'o') or '[]')
else
  ids = {}
  for i = 2, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end
local reply = {}
if #ids == 0 then
  return reply
end
-- In chunks: unpack() of a very large list would overflow Lua's stack.
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  local recs = redis.call('HMGET', KEYS[2], unpack(ids, first, last))
  local outs = redis.call('HMGET', KEYS[3], unpack(ids, first, last))
  for i = 1, last - first + 1 do
    if recs[i] then
      reply[#reply + 1] = ids[first + i - 1]
      reply[#reply + 1] = recs[i]
      reply[#reply + 1] = outs[i]
    end
  end
end
return reply
