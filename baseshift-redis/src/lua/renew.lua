-- renew_lease. KEYS: jobs, leases. ARGV[1]: JSON {wf, job, token, exp_ms, exp}.
-- The record's version is left alone: the holder's next write still carries its claim's version.
local p = cjson.decode(ARGV[1])
local raw = redis.call('HGET', KEYS[1], p.job)
if not raw then
  return fail('not_found', p.job, 'no such job')
end
local rec = cjson.decode(raw)
if rec.status ~= 'RUNNING' or rec.lease == cjson.null or rec.lease.token ~= p.token then
  return fail('conflict', p.job, 'the lease is no longer held with this token')
end
rec.lease.expires_at = p.exp
redis.call('HSET', KEYS[1], p.job, cjson.encode(rec))
if not rec.awaiting_external then
  redis.call('ZADD', KEYS[2], p.exp_ms, member(p.wf, p.job, rec.job_type, rec.priority, rec.concurrency))
end
return {'ok'}
