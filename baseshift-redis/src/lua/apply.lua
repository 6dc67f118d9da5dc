-- apply. KEYS: wf, jobs, out, ready, delayed, leases, outbox, seq.
-- ARGV[1]: JSON {prefix, wf, now_ms, now, header, jobs, outcomes, delta, reopened, replay, events,
-- at, at_ms}; `at` (RFC 3339, or null) asks for completion at zero (see complete.lua).
-- The header's `json`, each job's `json` and `out` and each of `events` are ARGV indexes
-- of the strings themselves (ARGV[2..]), so cjson never sees them.
-- Dead letters are kept in the sorted set <prefix>:dead (score 0, member "<wf>\0<job>").
-- Every precondition is checked before the first write, so a failed step writes nothing
-- (completion at zero comes after the writes, and only ever declines, never fails).
local p = cjson.decode(ARGV[1])
local k_wf, k_jobs, k_out = KEYS[1], KEYS[2], KEYS[3]
local k_ready, k_delayed, k_leases, k_outbox, k_seq = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

-- The stored header too when the step may complete the workflow (see complete.lua).
local state = redis.call('HMGET', k_wf, 'v', 's', 'r', type(p.at) == 'string' and 'h' or 'v')
if not state[1] then
  return fail('not_found', '', 'no such workflow')
end
local stored_version, stored_status = tonumber(state[1]), state[2]
local remaining = tonumber(state[3])

-- Checks, in the order of the in-memory store: header, jobs, parent outcomes.
local h = p.header
if h ~= cjson.null then
  if h.expect ~= stored_version then
    return fail('conflict', '', string.format('stale workflow version %d (stored %d)', h.expect, stored_version))
  end
  if not can_wf(stored_status, h.status, p.replay) then
    return fail('illegal_transition', '', 'workflow cannot go from ' .. stored_status .. ' to ' .. h.status)
  end
end
local stored = {}
for _, j in ipairs(p.jobs) do
  local raw = redis.call('HGET', k_jobs, j.id)
  if not raw then
    return fail('not_found', j.id, 'no such job')
  end
  local rec = peek_job(raw)
  if rec.version ~= j.expect then
    return fail('conflict', j.id, string.format('stale job version %d (stored %d)', j.expect, rec.version))
  end
  if not can_job(rec.status, j.status, p.replay) then
    return fail('illegal_transition', j.id, 'job cannot go from ' .. rec.status .. ' to ' .. j.status)
  end
  stored[j.id] = rec
end
for _, o in ipairs(p.outcomes) do
  if redis.call('HEXISTS', k_jobs, o.child) == 0 then
    return fail('not_found', o.child, 'no such child job')
  end
end

-- Writes.
if h ~= cjson.null then
  redis.call('HSET', k_wf, 'h', ARGV[h.json], 'v', stored_version + 1, 's', h.status)
  if h.status ~= stored_status then
    redis.call('ZREM', p.prefix .. ':idx:' .. stored_status, p.wf)
    redis.call('ZADD', p.prefix .. ':idx:' .. h.status, 0, p.wf)
    -- Finished workflows by finish time, for retention (a replay takes one out again).
    if wf_final(h.status) then
      redis.call('ZADD', p.prefix .. ':finished', p.now_ms, p.wf)
    elseif wf_final(stored_status) then
      redis.call('ZREM', p.prefix .. ':finished', p.wf)
    end
  end
end

local wake = false
local written = {}
-- What completion at zero needs of the records this step writes, so it decodes only the others.
local known = {}
local k_dead = p.prefix .. ':dead'
for _, j in ipairs(p.jobs) do
  local old = stored[j.id]
  unplace(k_ready, k_delayed, k_leases, member(p.wf, j.id, old.job_type, old.priority, old.concurrency), old.status)
  redis.call('HSET', k_jobs, j.id, ARGV[j.json])
  if j.out ~= cjson.null then
    redis.call('HSET', k_out, j.id, ARGV[j.out])
  else
    redis.call('HDEL', k_out, j.id)
  end
  if place(k_ready, k_delayed, k_leases, member(p.wf, j.id, j.type, j.prio, j.conc), j.place, j.score) then
    wake = true
  end
  -- A job leaving RUNNING frees its key's slot (and may let a held-back job run).
  if old.status == 'RUNNING' and has_key(old.concurrency) then
    count_key(p.prefix, old.concurrency.key, -1)
    wake = true
  end
  if j.status == 'RUNNING' and has_key(j.conc) then
    count_key(p.prefix, j.conc.key, 1)
  end
  if j.dead then
    redis.call('ZADD', k_dead, 0, p.wf .. '\0' .. j.id)
  elseif old.status == 'FAILED' then
    redis.call('ZREM', k_dead, p.wf .. '\0' .. j.id)
  end
  written[j.id] = true
  known[j.id] = {status = j.status, propagated = j.prop, main = not j.comp}
end

local ready, eligible, skipped, derived = {}, {}, {}, {}
local skipped_main = 0
for _, o in ipairs(p.outcomes) do
  local child = cjson.decode(redis.call('HGET', k_jobs, o.child))
  record_outcome(child.deps, o.status)
  if not written[o.child] then
    child.version = child.version + 1
    written[o.child] = true
  end
  if child.status == 'PENDING' and not child.eligible then
    local decision = decide(child.trigger, child.deps)
    if decision == 'ready' and child.has_condition then
      child.eligible = true
      eligible[#eligible + 1] = o.child
    elseif decision == 'ready' then
      child.status = 'READY'
      child.ready_at = p.now
      ready[#ready + 1] = o.child
      derived[#derived + 1] = job_event(p.wf, o.child, 'READY', child.attempt, p.now)
      local m = member(p.wf, o.child, child.job_type, child.priority, child.concurrency)
      redis.call('ZADD', k_ready, queue_score(child.priority, p.now_ms), m)
      wake = true
    elseif decision == 'skip' then
      child.status = 'SKIPPED'
      child.propagated = false
      child.finished_at = p.now
      if child.compensation_of == cjson.null then
        skipped_main = skipped_main + 1
      end
      skipped[#skipped + 1] = o.child
      derived[#derived + 1] = job_event(p.wf, o.child, 'SKIPPED', child.attempt, p.now)
    end
  end
  redis.call('HSET', k_jobs, o.child, cjson.encode(child))
  known[o.child] = {status = child.status, propagated = child.propagated == true,
    main = child.compensation_of == nil or child.compensation_of == cjson.null}
end

remaining = math.max(0, remaining + p.reopened - skipped_main - p.delta)

-- Completion at zero: the header (the stored one, or the one written above) and every job
-- record as they are now; the event goes after the step's other events.
local completed = nil
if remaining == 0 and type(p.at) == 'string' then
  local status, version, header = stored_status, stored_version, state[4]
  if h ~= cjson.null then
    status, version, header = h.status, stored_version + 1, ARGV[h.json]
  end
  if status == 'RUNNING' then
    completed = complete(k_wf, k_jobs, k_out, p, version, known, header, remaining)
  end
end
-- (A completion wrote the remaining count with the header.)
if not completed then
  redis.call('HSET', k_wf, 'r', remaining)
end

-- The step's own events (e.g. the parent's `job_succeeded`) precede the changes they caused.
local events = {}
for _, e in ipairs(p.events) do
  events[#events + 1] = ARGV[e]
end
for _, e in ipairs(derived) do
  events[#events + 1] = e
end
if completed then
  events[#events + 1] = completed
end
push_events(k_outbox, k_seq, events)
if wake then
  redis.call('PUBLISH', p.prefix .. ':wake', '1')
end
local reply = {'ok', remaining, #ready, #eligible, #skipped, completed and 1 or 0}
for _, list in ipairs({ready, eligible, skipped}) do
  for _, id in ipairs(list) do
    reply[#reply + 1] = id
  end
end
return reply
