-- create_workflow. KEYS: wf, jobs, out, ready, delayed, leases, outbox, seq.
-- ARGV[1]: JSON {prefix, wf, idem, tpl_key, tpl, header, status, remaining, queue, order, jobs, events};
-- `tpl`, `header`, `order`, each job's `value`, `member` and `out` and each of `events` are ARGV
-- indexes of the strings themselves (ARGV[2..]), so cjson never sees them.
-- `tpl` (the snapshot body) is null when the caller believes it stored: if it is not,
-- the reply is {'need_tpl'} and nothing is written (the caller sends it again with it).
local p = cjson.decode(ARGV[1])
local k_wf, k_jobs, k_out = KEYS[1], KEYS[2], KEYS[3]
local k_ready, k_delayed, k_leases, k_outbox, k_seq = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

local k_idem = nil
if p.idem ~= cjson.null then
  k_idem = p.prefix .. ':idem:' .. p.idem
  local existing = redis.call('GET', k_idem)
  if existing then
    return {'existing', existing}
  end
end
if redis.call('EXISTS', k_wf) == 1 then
  return fail('conflict', '', 'a workflow with this id exists')
end

local has_tpl = p.tpl ~= nil and p.tpl ~= cjson.null
if not has_tpl and redis.call('EXISTS', p.tpl_key) == 0 then
  return {'need_tpl'}
end

if k_idem then
  redis.call('SET', k_idem, p.wf)
end
if has_tpl then
  redis.call('SET', p.tpl_key, ARGV[p.tpl], 'NX')
end
-- The header's fields: see HEADER_FIELDS in codec.rs.
redis.call('HSET', k_wf, 'h', ARGV[p.header], 'v', 1, 's', p.status, 'r', p.remaining, 'o', ARGV[p.order],
  'q', p.queue and '1' or '0')
redis.call('ZADD', p.prefix .. ':idx:all', 0, p.wf)
redis.call('ZADD', p.prefix .. ':idx:' .. p.status, 0, p.wf)

local wake = false
for _, j in ipairs(p.jobs) do
  -- The stored layout: see job_head in lib.lua.
  local m = ARGV[j.member]
  redis.call('HSET', k_jobs, j.id, ARGV[j.value])
  if j.out ~= cjson.null then
    redis.call('HSET', k_out, j.id, ARGV[j.out])
  end
  if place(k_ready, k_delayed, k_leases, m, j.place, j.score) then
    wake = true
  end
end
local events = {}
for _, e in ipairs(p.events) do
  events[#events + 1] = ARGV[e]
end
push_events(k_outbox, k_seq, events)
if wake then
  redis.call('PUBLISH', p.prefix .. ':wake', '1')
end
return {'created', p.wf}
