-- apply: a batch of steps (one or more), each checked and applied, or refused, on its own.
-- KEYS: ready, delayed, leases, outbox, seq; then wf, jobs, out of each step, in order.
-- ARGV[1]: the key prefix; then each step's arguments, positional (no control JSON to
-- decode; see `StepArgs` in write.rs, which writes them):
--   wf, now_ms, now, header expect ('' = no header), header status, header JSON, header
--   compensation queue not empty (1/0), delta, reopened, replay (1/0), at (RFC 3339, '' = no completion at zero), at_ms,
--   #jobs, #outcomes, #events;
--   per job: id, expect, status, the record as stored (see job_head in lib.lua), output
--   JSON ('' = none), place, score, queue member, dead (1/0),
--   compensation (1/0), propagated (1/0), concurrency key and limit ('' = none);
--   per parent outcome: child, status; then the events' JSON.
-- Reply: one reply per step, in order: {'ok', remaining, #ready, #eligible, #skipped,
-- completed (1/0), ids...} or {'err', kind, job, message}.
-- Dead letters are kept in the sorted set <prefix>:dead (score 0, member "<wf>\0<job>").
-- A step checks every precondition before its first write, so a refused step writes
-- nothing (completion at zero comes after the writes, and only ever declines, never
-- fails); steps run in their order, each seeing what the ones before it wrote. The
-- steps' events go to the outbox in step order, and one wake-up is published for all.
local prefix = ARGV[1]
local k_ready, k_delayed, k_leases, k_outbox, k_seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local k_dead = prefix .. ':dead'
local wake = false
local events = {}

-- One step, `p` as parsed below; returns its reply (and appends its events to `events`).
local function apply_step(p, k_wf, k_jobs, k_out)
  -- The stored header too when the step may complete the workflow (see complete.lua).
  -- (`q` only matters to a step that may complete the workflow; see complete.lua.)
  local state = redis.call('HMGET', k_wf, 'v', 's', 'r', 'q')
  if not state[1] then
    return fail('not_found', '', 'no such workflow')
  end
  local stored_version, stored_status = tonumber(state[1]), state[2]
  local remaining = tonumber(state[3])

  -- Checks, in the order of the in-memory store: header, jobs, parent outcomes.
  local h = p.header
  if h then
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
    -- (Versions compare as text: both are written as plain decimals.)
    local status, version, _, _, _, _, at_member, at_json = job_peek(raw)
    if version ~= j.expect then
      return fail('conflict', j.id, string.format('stale job version %d (stored %d)', j.expect, version))
    end
    if not can_job(status, j.status, p.replay) then
      return fail('illegal_transition', j.id, 'job cannot go from ' .. status .. ' to ' .. j.status)
    end
    stored[j.id] = {status = status, member = string.sub(raw, at_member, at_json - 2)}
  end
  for _, o in ipairs(p.outcomes) do
    if redis.call('HEXISTS', k_jobs, o.child) == 0 then
      return fail('not_found', o.child, 'no such child job')
    end
  end

  -- Writes.
  if h then
    -- The fields that win over the JSON are written with it (`f` cleared; HEADER_FIELDS in codec.rs).
    redis.call('HSET', k_wf, 'h', h.json, 'v', stored_version + 1, 's', h.status, 'q', h.queue, 'f', '')
    if h.status ~= stored_status then
      redis.call('ZREM', prefix .. ':idx:' .. stored_status, p.wf)
      redis.call('ZADD', prefix .. ':idx:' .. h.status, 0, p.wf)
      -- Finished workflows by finish time, for retention (a replay takes one out again).
      if wf_final(h.status) then
        redis.call('ZADD', prefix .. ':finished', p.now_ms, p.wf)
      elseif wf_final(stored_status) then
        redis.call('ZREM', prefix .. ':finished', p.wf)
      end
    end
  end

  local written = {}
  -- What completion at zero needs of the records this step writes, so it decodes only the others.
  local known = {}
  for _, j in ipairs(p.jobs) do
    local old = stored[j.id]
    unplace(k_ready, k_delayed, k_leases, old.member, old.status)
    redis.call('HSET', k_jobs, j.id, j.value)
    if j.out ~= '' then
      redis.call('HSET', k_out, j.id, j.out)
    else
      redis.call('HDEL', k_out, j.id)
    end
    if place(k_ready, k_delayed, k_leases, j.member, j.place, j.score) then
      wake = true
    end
    -- A job leaving RUNNING frees its key's slot (and may let a held-back job run). Its
    -- old key is in its old member (the same as the new one unless the member changed).
    if old.status == 'RUNNING' then
      local key = j.conc and j.conc.key
      if old.member ~= j.member then
        key = cjson.decode(old.member)[5]
      end
      if key then
        count_key(prefix, key, -1)
        wake = true
      end
    end
    if j.status == 'RUNNING' and has_key(j.conc) then
      count_key(prefix, j.conc.key, 1)
    end
    if j.dead then
      redis.call('ZADD', k_dead, 0, p.wf .. '\0' .. j.id)
    elseif old.status == 'FAILED' then
      redis.call('ZREM', k_dead, p.wf .. '\0' .. j.id)
    end
    written[j.id] = true
    known[j.id] = {status = j.status, propagated = j.prop, main = not j.comp, out = j.out}
  end

  local ready, eligible, skipped, derived = {}, {}, {}, {}
  local skipped_main = 0
  for _, o in ipairs(p.outcomes) do
    -- The record JSON decoded, with the fields the head wins for taken from the head.
    local raw = redis.call('HGET', k_jobs, o.child)
    local head = job_head(raw)
    local child = cjson.decode(string.sub(raw, head.j))
    child.status, child.version, child.attempt = head.status, head.version, head.attempt
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
        redis.call('ZADD', k_ready, queue_score(child.priority, p.now_ms), head.member)
        wake = true
      elseif decision == 'skip' then
        child.status = 'SKIPPED'
        child.propagated = false
        child.finished_at = p.now
        if not head.comp then
          skipped_main = skipped_main + 1
        end
        skipped[#skipped + 1] = o.child
        derived[#derived + 1] = job_event(p.wf, o.child, 'SKIPPED', child.attempt, p.now)
      end
    end
    local flags = string.sub(head.flags, 1, 1) .. (child.propagated == true and '1' or '0') .. string.sub(head.flags, 3)
    redis.call('HSET', k_jobs, o.child, head_line(child.status, child.version, head.attempt, flags)
      .. string.sub(raw, head.l, head.j - 1) .. cjson.encode(child))
    known[o.child] = {status = child.status, propagated = child.propagated == true, main = not head.comp}
  end

  remaining = math.max(0, remaining + p.reopened - skipped_main - p.delta)

  -- Completion at zero: the header (the stored one, or the one written above) and every job
  -- record as they are now; the event goes after the step's other events.
  local completed = nil
  if remaining == 0 and p.at then
    local status, version, queue = stored_status, stored_version, state[4]
    if h then
      status, version, queue = h.status, stored_version + 1, h.queue
    end
    if status == 'RUNNING' and queue ~= '1' then
      completed = complete(k_wf, k_jobs, k_out, p, version, known, remaining)
    end
  end
  -- (A completion wrote the remaining count with the header.)
  if not completed then
    redis.call('HSET', k_wf, 'r', remaining)
  end

  -- The step's own events (e.g. the parent's `job_succeeded`) precede the changes they caused.
  for _, e in ipairs(p.events) do
    events[#events + 1] = e
  end
  for _, e in ipairs(derived) do
    events[#events + 1] = e
  end
  if completed then
    events[#events + 1] = completed
  end
  local reply = {'ok', remaining, #ready, #eligible, #skipped, completed and 1 or 0}
  for _, list in ipairs({ready, eligible, skipped}) do
    for _, id in ipairs(list) do
      reply[#reply + 1] = id
    end
  end
  return reply
end

local replies = {}
local a = 1 -- the last ARGV read
for i = 1, (#KEYS - 5) / 3 do
  local p = {prefix = prefix, wf = ARGV[a + 1], now_ms = tonumber(ARGV[a + 2]), now = ARGV[a + 3],
    delta = tonumber(ARGV[a + 8]), reopened = tonumber(ARGV[a + 9]), replay = ARGV[a + 10] == '1',
    jobs = {}, outcomes = {}, events = {}}
  if ARGV[a + 4] ~= '' then
    p.header = {expect = tonumber(ARGV[a + 4]), status = ARGV[a + 5], json = ARGV[a + 6], queue = ARGV[a + 7]}
  end
  if ARGV[a + 11] ~= '' then
    p.at, p.at_ms = ARGV[a + 11], tonumber(ARGV[a + 12])
  end
  local nj, no, ne = tonumber(ARGV[a + 13]), tonumber(ARGV[a + 14]), tonumber(ARGV[a + 15])
  a = a + 15
  for j = 1, nj do
    local conc = nil
    if ARGV[a + 13] ~= '' then
      conc = {key = ARGV[a + 12], limit = tonumber(ARGV[a + 13])}
    end
    p.jobs[j] = {id = ARGV[a + 1], expect = ARGV[a + 2], status = ARGV[a + 3], value = ARGV[a + 4],
      out = ARGV[a + 5], place = ARGV[a + 6], score = ARGV[a + 7], member = ARGV[a + 8],
      dead = ARGV[a + 9] == '1', comp = ARGV[a + 10] == '1', prop = ARGV[a + 11] == '1', conc = conc}
    a = a + 13
  end
  for o = 1, no do
    p.outcomes[o] = {child = ARGV[a + 1], status = ARGV[a + 2]}
    a = a + 2
  end
  for e = 1, ne do
    p.events[e] = ARGV[a + e]
  end
  a = a + ne
  -- A runtime error (e.g. a stored record that does not parse) fails its own step only;
  -- like any script error it may leave that step's earlier writes in place.
  local ok, reply = pcall(apply_step, p, KEYS[3 * i + 3], KEYS[3 * i + 4], KEYS[3 * i + 5])
  if not ok then
    local message = type(reply) == 'table' and (reply.err or reply.msg) or tostring(reply)
    reply = fail('internal', '', 'apply script error: ' .. tostring(message))
  end
  replies[i] = reply
end

push_events(k_outbox, k_seq, events)
if wake then
  redis.call('PUBLISH', prefix .. ':wake', '1')
end
return replies
