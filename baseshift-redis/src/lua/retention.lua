-- retention. No KEYS (the keys are derived from the prefix, as in apply's indexes).
-- ARGV[1]: JSON {prefix, cutoff_ms, limit}. Removes up to `limit` workflows that finished
-- by cutoff_ms (score of <prefix>:finished, inclusive: scores are whole milliseconds, so
-- one that finished in the cutoff's millisecond, before the cutoff, counts), with their job records, outputs,
-- indexes, dead letters and idempotency key. A workflow that is not terminal, or holds a
-- job that is not, is only taken out of the finished index (a replay re-adds it).
-- Returns {workflows removed, jobs removed, index entries taken}.
local p = cjson.decode(ARGV[1])
local k_fin = p.prefix .. ':finished'
local ids = redis.call('ZRANGEBYSCORE', k_fin, '-inf', p.cutoff_ms, 'LIMIT', 0, p.limit)
local removed, jobs = 0, 0
for _, wf in ipairs(ids) do
  redis.call('ZREM', k_fin, wf)
  local k_wf = p.prefix .. ':wf:{' .. wf .. '}'
  local k_jobs = p.prefix .. ':jobs:{' .. wf .. '}'
  local k_out = p.prefix .. ':out:{' .. wf .. '}'
  local st = redis.call('HMGET', k_wf, 's', 'h')
  if st[1] and wf_final(st[1]) then
    local all = redis.call('HGETALL', k_jobs)
    local final = true
    for i = 2, #all, 2 do
      if not job_final(job_head(all[i]).status) then
        final = false
        break
      end
    end
    if final then
      local key = cjson.decode(st[2]).idempotency_key
      if type(key) == 'string' then
        local k_idem = p.prefix .. ':idem:' .. key
        if redis.call('GET', k_idem) == wf then
          redis.call('DEL', k_idem)
        end
      end
      for i = 1, #all, 2 do
        redis.call('ZREM', p.prefix .. ':dead', wf .. '\0' .. all[i])
      end
      redis.call('DEL', k_wf, k_jobs, k_out)
      redis.call('ZREM', p.prefix .. ':idx:all', wf)
      redis.call('ZREM', p.prefix .. ':idx:' .. st[1], wf)
      removed = removed + 1
      jobs = jobs + #all / 2
    end
  end
end
return {removed, jobs, #ids}
