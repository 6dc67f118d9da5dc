-- Completion at zero (prepended to apply.lua): the step that leaves a workflow done also
-- completes it, as baseshift_core::store::completion decides and builds it.
--
-- The header JSON is not rewritten: the fields a completion changes (status, version,
-- updated_at and finished_at) are hash fields that win over it (`s`, `v`, `f`; see
-- HEADER_FIELDS in codec.rs), and a RUNNING header whose compensation queue is empty (`q`)
-- is all it needs. Nothing here decodes and re-encodes a value it keeps: the outputs are
-- the jobs' own JSON (cjson would round big integers and turn `{}` into `[]`).

-- The ids of the SUCCEEDED jobs of `k_jobs` if every job is a main job that SUCCEEDED or
-- was SKIPPED with its outcome propagated; else nil (a record that does not parse
-- included: the engine's finalize reads it and reports it). `known[id]` ({status,
-- propagated, main, out}) stands for the record of a job the step wrote itself, which
-- then needs no reading (`out`: its output JSON, '' for none; nil for a child the step
-- updated, whose output it does not have): when the step wrote every job of the workflow,
-- no record is read at all.
local function succeeded_ids(k_jobs, known)
  local all, n = {}, 0
  for id in pairs(known) do
    n = n + 1
    all[n] = id
  end
  if redis.call('HLEN', k_jobs) == n then
    table.sort(all)
  else
    local flat = redis.call('HGETALL', k_jobs)
    all = {}
    for i = 1, #flat, 2 do
      local id = flat[i]
      all[#all + 1] = id
      if not known[id] then
        local ok, head = pcall(job_head, flat[i + 1])
        if not ok then
          return nil
        end
        known[id] = {status = head.status, propagated = head.propagated, main = not head.comp}
      end
    end
  end
  local ids = {}
  for _, id in ipairs(all) do
    local rec = known[id]
    if rec.propagated ~= true or not rec.main then
      return nil
    end
    if rec.status == 'SUCCEEDED' then
      ids[#ids + 1] = id
    elseif rec.status ~= 'SKIPPED' then
      return nil
    end
  end
  return ids
end

-- Completes the RUNNING workflow of `k_wf` (whose header version is `version` now) at
-- p.at if its job records allow it: writes the header and its indexes, and returns the
-- `workflow_completed` event JSON (the shape of Event::workflow); else nil, writing nothing.
-- `known`: see succeeded_ids; `remaining`: the count to store with it.
local function complete(k_wf, k_jobs, k_out, p, version, known, remaining)
  local ids = succeeded_ids(k_jobs, known)
  if not ids then
    return nil
  end
  -- The outputs: those the step wrote itself (`known[id].out`, '' for none) are at hand;
  -- only if some other job succeeded is the output hash read.
  local outs = {}
  local read = false
  for _, id in ipairs(ids) do
    local out = known[id] and known[id].out
    if out == nil then
      read = true
      break
    end
    if out ~= '' then
      outs[id] = out
    end
  end
  if read then
    local flat = redis.call('HGETALL', k_out)
    for i = 1, #flat, 2 do
      outs[flat[i]] = flat[i + 1]
    end
  end
  local parts = {}
  for i, id in ipairs(ids) do
    parts[i] = cjson.encode(id) .. ':' .. (outs[id] or 'null')
  end
  redis.call('HSET', k_wf, 'v', version + 1, 's', 'COMPLETED', 'r', remaining, 'f', p.at)
  redis.call('ZREM', p.prefix .. ':idx:RUNNING', p.wf)
  redis.call('ZADD', p.prefix .. ':idx:COMPLETED', 0, p.wf)
  redis.call('ZADD', p.prefix .. ':finished', p.at_ms, p.wf)
  return '{"event_type":"workflow_completed","timestamp":"' .. p.at .. '","payload":{"workflow_id":'
    .. cjson.encode(p.wf) .. ',"status":"COMPLETED","result":{"outputs":{' .. table.concat(parts, ',') .. '}}}}'
end
