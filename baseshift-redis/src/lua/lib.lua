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

-- The queue member of a job: enough to filter by type, to score a due retry and to
-- hold it back by its concurrency key (`conc`: nil, cjson.null or {key, limit}).
local function has_key(conc)
  return conc ~= nil and conc ~= cjson.null
end

local function member(wf, job, jtype, prio, conc)
  if has_key(conc) then
    return cjson.encode({wf, job, jtype, prio, conc.key, conc.limit})
  end
  return cjson.encode({wf, job, jtype, prio})
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

local function push_event(k_outbox, k_seq, json)
  local seq = redis.call('INCR', k_seq)
  redis.call('XADD', k_outbox, string.format('0-%d', seq), 'e', json)
end

-- The shape of baseshift_core::Event::job.
local function job_event(wf, job, status, attempt, now)
  return cjson.encode({
    event_type = 'job_' .. string.lower(status),
    timestamp = now,
    payload = {workflow_id = wf, job_id = job, status = status, attempt = attempt},
  })
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

local function unplace(k_ready, k_delayed, k_leases, m)
  redis.call('ZREM', k_ready, m)
  redis.call('ZREM', k_delayed, m)
  redis.call('ZREM', k_leases, m)
end
