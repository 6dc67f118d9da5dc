-- Shared helpers of the baseshift scripts (prepended to each of them).
-- JOB_NEXT / WF_NEXT, the legal transitions, are generated from baseshift-core's
-- `can_become` and inserted above this line.

local function fail(kind, job, message)
  return {'err', kind, job or '', message}
end

-- JOB_NEXT etc. are strings of ' FROM>TO ' edges (see scripts.rs).
local function has_edge(edges, from, to)
  return string.find(edges, ' ' .. from .. '>' .. to .. ' ', 1, true) ~= nil
end

-- `replay`: a replay step, which may also make the JOB_REPLAY / WF_REPLAY transitions.
local function can_job(from, to, replay)
  return from == to or has_edge(JOB_NEXT, from, to) or (replay == true and has_edge(JOB_REPLAY, from, to))
end

local function can_wf(from, to, replay)
  return from == to or has_edge(WF_NEXT, from, to) or (replay == true and has_edge(WF_REPLAY, from, to))
end

-- A status with no way on (COMPLETED, FAILED, ... ; a replay aside).
local function wf_final(status)
  return string.find(WF_NEXT, ' ' .. status .. '>', 1, true) == nil
end

local function job_final(status)
  return string.find(JOB_NEXT, ' ' .. status .. '>', 1, true) == nil
end

-- A concurrency key argument (`conc`: nil, cjson.null or {key, limit}) that is set.
local function has_key(conc)
  return conc ~= nil and conc ~= cjson.null
end

-- Running jobs per concurrency key live in the hash <prefix>:ckeys.
local function count_key(prefix, key, delta)
  local n = redis.call('HINCRBY', prefix .. ':ckeys', key, delta)
  if n <= 0 then
    redis.call('HDEL', prefix .. ':ckeys', key)
  end
end

local function queue_score(prio, ready_ms)
  return -(prio - 0.1 * (ready_ms / 1000))
end

-- Appends the event JSON strings of `list` to the outbox, in order: one INCRBY takes
-- their sequence numbers at once.
local function push_events(k_outbox, k_seq, list)
  if #list == 0 then
    return
  end
  local first = redis.call('INCRBY', k_seq, #list) - #list
  for i, json in ipairs(list) do
    redis.call('XADD', k_outbox, string.format('0-%d', first + i), 'e', json)
  end
end

-- The shape of baseshift_core::Event::job, joined as text (cjson would build and walk a
-- table of tables for it); `status` is an upper-case word, the strings are encoded.
local function job_event(wf, job, status, attempt, now)
  return '{"event_type":"job_' .. string.lower(status) .. '","timestamp":' .. cjson.encode(now)
    .. ',"payload":{"workflow_id":' .. cjson.encode(wf) .. ',"job_id":' .. cjson.encode(job)
    .. ',"status":"' .. status .. '","attempt":' .. string.format('%d', attempt) .. '}}'
end

-- baseshift_core::state::DepCounts::record
local function record_outcome(deps, status)
  if status == 'SUCCEEDED' then
    deps.succeeded = deps.succeeded + 1
  elseif status == 'SKIPPED' then
    deps.skipped = deps.skipped + 1
  else
    deps.failed = deps.failed + 1
  end
end

-- baseshift_core::state::ChildDecision::decide
local function decide(trigger, deps)
  if deps.succeeded + deps.failed + deps.skipped < deps.total then
    return 'wait'
  end
  if deps.total == 0 then
    return 'ready'
  end
  local ok
  if trigger == 'all_done' then
    ok = true
  elseif trigger == 'one_success' then
    ok = deps.succeeded > 0
  elseif trigger == 'none_failed' then
    ok = deps.failed == 0
  else
    ok = deps.succeeded == deps.total
  end
  if ok then return 'ready' end
  return 'skip'
end

-- Moves due delayed jobs to the ready queue; returns how many moved.
local function promote(k_delayed, k_ready, now_ms)
  local due = redis.call('ZRANGEBYSCORE', k_delayed, '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, 1000)
  for i = 1, #due, 2 do
    local m = due[i]
    local e = cjson.decode(m)
    redis.call('ZADD', k_ready, queue_score(e[4], tonumber(due[i + 1])), m)
    redis.call('ZREM', k_delayed, m)
  end
  return #due / 2
end

-- Puts a written record in the index its state calls for (placement computed by the caller).
local function place(k_ready, k_delayed, k_leases, m, where, score)
  if where == 'r' then
    redis.call('ZADD', k_ready, score, m)
  elseif where == 'd' then
    redis.call('ZADD', k_delayed, score, m)
  elseif where == 'l' then
    redis.call('ZADD', k_leases, score, m)
  end
  return where == 'r' or where == 'd'
end

-- Takes a record's member out of the queues its stored `status` can have put it in (a
-- READY one in ready or delayed, a RUNNING one in leases, no other in any: see
-- `placement` in codec.rs, which every write follows).
local function unplace(k_ready, k_delayed, k_leases, m, status)
  if status == 'READY' then
    redis.call('ZREM', k_ready, m)
    redis.call('ZREM', k_delayed, m)
  elseif status == 'RUNNING' then
    redis.call('ZREM', k_leases, m)
  end
end

-- A stored job record is five lines (`decode_job` in codec.rs has the layout):
--   <status> <version> <attempt> <flags>     flags: awaiting_external, propagated, compensation (1/0)
--   <lease JSON or null>
--   <started_at JSON or null>
--   <queue member>                           built by the caller (`queue_member` in codec.rs)
--   <record JSON>                            serde's, without the output
-- The head (the first four lines) wins over the JSON for status, version, attempt,
-- awaiting_external, lease and started_at, so a claim or a renewal rewrites only the head.
-- job_peek reads the head without touching the JSON, for the hot paths (a claim, a
-- step's own jobs): status, version and attempt (as text), the flags awaiting,
-- propagated and compensation ('0' or '1' each), and where the member line and the JSON
-- line begin. job_head gives the same (and the positions of the lease and start lines)
-- as a table: {status, version, attempt, flags, awaiting, propagated, comp, member, l, s,
-- m, j}, numbers as numbers. A value of any other layout is an error.
local function job_peek(raw)
  local status, version, attempt, a, p, c, l = string.match(raw, '^(%u+) (%d+) (%d+) ([01])([01])([01])\n()')
  local s = l and string.find(raw, '\n', l, true)
  local m = s and string.find(raw, '\n', s + 1, true)
  local j = m and string.find(raw, '\n', m + 1, true)
  if not j then
    error('stored job record of an unknown layout')
  end
  return status, version, attempt, a, p, c, m + 1, j + 1, l, s + 1
end

local function job_head(raw)
  local status, version, attempt, a, p, c, m, j, l, s = job_peek(raw)
  return {status = status, version = tonumber(version), attempt = tonumber(attempt), flags = a .. p .. c,
    awaiting = a == '1', propagated = p == '1', comp = c == '1', member = string.sub(raw, m, j - 2),
    l = l, s = s, m = m, j = j}
end

-- The head's first line.
local function head_line(status, version, attempt, flags)
  return status .. ' ' .. string.format('%d', version) .. ' ' .. string.format('%d', attempt) .. ' ' .. flags .. '\n'
end

-- A lease as serde writes baseshift_core::state::Lease, of its three strings JSON-encoded.
local function lease_json(owner, token, expires_at)
  return '{"owner":' .. owner .. ',"token":' .. token .. ',"expires_at":' .. expires_at .. '}'
end
