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

-- The fields of a stored job record the checks and queue members need: status, version,
-- job_type, priority and concurrency. A record as serde writes it (fields in the order of
-- baseshift_core::JobRecord, checked by `peek_job_agrees_with_a_full_decode` in scripts.rs) with plain ids
-- (no quote or backslash) and no concurrency key is read by one pattern; any other record
-- (e.g. one cjson wrote, with its keys in any order) is decoded whole. `"concurrency":`
-- with bare quotes can only be a key (quotes inside strings are escaped): where it is
-- anywhere, the record is decoded.
local function peek_job(raw)
  local job_type, status, version, priority = string.match(raw,
    '^{"workflow_id":"[^"\\]*","job_id":"[^"\\]*","job_type":"([^"\\]*)","status":"(%u+)","version":(%d+),"attempt":%d+,"priority":(%-?%d+),"trigger":')
  if job_type and not string.find(raw, '"concurrency":', 1, true) then
    return {job_type = job_type, status = status, version = tonumber(version), priority = tonumber(priority)}
  end
  return cjson.decode(raw)
end

-- A serde-ordered record (as peek_job reads one) split around the fields a claim writes:
-- status, version, attempt, lease, awaiting_external, started_at.
local CLAIM_SPLIT = '^({"workflow_id":"[^"\\]*","job_id":"[^"\\]*","job_type":"[^"\\]*","status":")(%u+)'
  .. '(","version":)(%d+)(,"attempt":)(%d+)'
  .. '(,"priority":%-?%d+,"trigger":"[%a_]+","has_condition":%a+,"deps":{[^}]*},"eligible":%a+,"propagated":%a+,"ready_at":[^,]*,"lease":)'
  .. '(.-)(,"awaiting_external":)(%a+)(,.*,"started_at":)([^,]*)(,"finished_at":[^,]*})$'

-- A job record to claim: {status, awaiting_external, attempt, concurrency} and
-- `claimed(lease, now)`, the record RUNNING under `lease` ({owner, token, expires_at}) with
-- attempt and version bumped and started_at = `now`, as JSON. A serde-ordered record
-- without a concurrency key is edited as text (so it keeps serde's layout and numbers);
-- any other is decoded and re-encoded whole.
local function claim_view(raw)
  local c = {string.match(raw, CLAIM_SPLIT)}
  if c[1] and not string.find(raw, '"concurrency":', 1, true) then
    local attempt = tonumber(c[6]) + 1
    return {status = c[2], awaiting_external = c[10] == 'true', attempt = attempt,
      claimed = function(lease, now)
        local l = '{"owner":' .. cjson.encode(lease.owner) .. ',"token":' .. cjson.encode(lease.token)
          .. ',"expires_at":' .. cjson.encode(lease.expires_at) .. '}'
        return c[1] .. 'RUNNING' .. c[3] .. string.format('%d', tonumber(c[4]) + 1) .. c[5]
          .. string.format('%d', attempt) .. c[7] .. l .. c[9] .. c[10] .. c[11] .. cjson.encode(now) .. c[13]
      end}
  end
  local rec = cjson.decode(raw)
  return {status = rec.status, awaiting_external = rec.awaiting_external, attempt = rec.attempt + 1,
    concurrency = rec.concurrency,
    claimed = function(lease, now)
      rec.status = 'RUNNING'
      rec.attempt = rec.attempt + 1
      rec.lease = lease
      rec.started_at = now
      rec.version = rec.version + 1
      return cjson.encode(rec)
    end}
end
