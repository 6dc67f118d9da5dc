-- dead_letters. KEYS: dead (sorted set, score 0, members "<wf>\0<job>").
-- ARGV: prefix, lex start ('-', '[<wf>\0' or '(<wf>\0<job>'), workflow filter ('' = any),
-- job type filter ('' = any), limit.
-- Reply: {record 1, record 2, ...} in member order; members whose record is gone or no
-- longer FAILED are dropped from the set on the way.
local prefix, start, only_wf, only_type = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local reply = {}
while #reply < limit do
  local batch = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, 200)
  if #batch == 0 then
    break
  end
  for _, m in ipairs(batch) do
    local cut = string.find(m, '\0', 1, true)
    local wf, job = string.sub(m, 1, cut - 1), string.sub(m, cut + 1)
    if only_wf ~= '' and wf ~= only_wf then
      return reply
    end
    local raw = redis.call('HGET', prefix .. ':jobs:{' .. wf .. '}', job)
    local rec = raw and job_head(raw)
    if not rec or rec.status ~= 'FAILED' then
      redis.call('ZREM', KEYS[1], m)
    elseif only_type == '' or cjson.decode(rec.member)[3] == only_type then
      reply[#reply + 1] = raw
      if #reply >= limit then
        return reply
      end
    end
    start = '(' .. m
  end
end
return reply
