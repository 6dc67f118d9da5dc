-- renew_lease. KEYS: jobs, leases. ARGV[1]: JSON {wf, job, token, exp_ms, exp}.
-- The record's version is left alone: the holder's next write still carries its claim's version.
local p = cjson.decode(ARGV[1])
local raw = redis.call('HGET', KEYS[1], p.job)
if not raw then
  return fail('not_found', p.job, 'no such job')
end
-- Only the head is rewritten (see job_head in lib.lua): its lease line.
local head = job_head(raw)
local lease = head.status == 'RUNNING' and cjson.decode(string.sub(raw, head.l, head.s - 2))
if not lease or lease == cjson.null or lease.token ~= p.token then
  return fail('conflict', p.job, 'the lease is no longer held with this token')
end
local renewed = lease_json(cjson.encode(lease.owner), cjson.encode(lease.token), cjson.encode(p.exp))
redis.call('HSET', KEYS[1], p.job, string.sub(raw, 1, head.l - 1) .. renewed .. '\n' .. string.sub(raw, head.s))
if not head.awaiting then
  redis.call('ZADD', KEYS[2], p.exp_ms, head.member)
end
return {'ok'}
