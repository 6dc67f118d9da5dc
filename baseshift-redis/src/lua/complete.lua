-- Completion at zero (prepended to apply.lua): the step that leaves a workflow done also
-- completes it, as baseshift_core::store::completion decides and builds it.
--
-- Nothing here decodes and re-encodes a value it keeps: the header holds the workflow's
-- input and the outputs are the jobs' own JSON, and cjson would round big integers and
-- turn `{}` into `[]`. The header is edited as text, relying on the field order serde
-- gives WorkflowRecord (checked by `completed_header_layout` in codec.rs): the strings id,
-- template_id and template_version, then status and version, then input ...; last
-- compensation_queue, error, created_at, updated_at, finished_at. Strings cannot hold an
-- unescaped quote, so a pattern starting `","` or ending `":` matches only between fields;
-- the input (any JSON) can hold such keys, hence the first match before it and the last
-- after it.

-- The last position of the plain string `pat` in `s`, or nil.
local function find_last(s, pat)
  local found, from = nil, 1
  while true do
    local i = string.find(s, pat, from, true)
    if not i then
      return found
    end
    found, from = i, i + 1
  end
end

-- The header text `h` of a RUNNING workflow with an empty compensation queue, COMPLETED
-- with `version` and updated_at = finished_at = `at`; nil if `h` is not such a header (or
-- not of the expected layout: then the engine finalizes in a step of its own).
local function completed_header(h, version, at)
  local s, e = string.find(h, '","status":"RUNNING","version":%d+,"input":')
  local q = find_last(h, ',"compensation_queue":')
  if not s or not q or q < e then
    return nil
  end
  local keep = string.match(string.sub(h, q),
    '^(,"compensation_queue":%[%],"error":.-,"created_at":"[^"]*"),"updated_at":"[^"]*","finished_at":null}$')
  if not keep then
    return nil
  end
  return string.sub(h, 1, s - 1) .. string.format('","status":"COMPLETED","version":%d,"input":', version)
    .. string.sub(h, e + 1, q - 1) .. keep .. ',"updated_at":"' .. at .. '","finished_at":"' .. at .. '"}'
end

-- The ids of the SUCCEEDED jobs if every record in the flat HGETALL reply `all` is a main
-- job that SUCCEEDED or was SKIPPED with its outcome propagated; else nil (a record that
-- does not parse included: the engine's finalize reads it and reports it). `known[id]`
-- ({status, propagated, main, out}) stands for the record of a job the step wrote itself,
-- which then needs no reading (`out`: its output JSON, '' for none; nil for a child the
-- step updated, whose output it does not have).
local function succeeded_ids(all, known)
  local ids = {}
  for i = 1, #all, 2 do
    local rec = known[all[i]]
    if not rec then
      local ok, head = pcall(job_head, all[i + 1])
      if not ok then
        return nil
      end
      rec = {status = head.status, propagated = head.propagated, main = not head.comp}
    end
    if rec.propagated ~= true or not rec.main then
      return nil
    end
    if rec.status == 'SUCCEEDED' then
      ids[#ids + 1] = all[i]
    elseif rec.status ~= 'SKIPPED' then
      return nil
    end
  end
  return ids
end

-- Completes the RUNNING workflow of `k_wf` (whose header version is `version` now) at
-- p.at if its job records allow it: writes the header and its indexes, and returns the
-- `workflow_completed` event JSON (the shape of Event::workflow); else nil, writing nothing.
-- `known`: see succeeded_ids; `header`: the header text as the step leaves it; `remaining`:
-- the count to store with it.
local function complete(k_wf, k_jobs, k_out, p, version, known, header, remaining)
  local ids = succeeded_ids(redis.call('HGETALL', k_jobs), known)
  if not ids then
    return nil
  end
  local done = header and completed_header(header, version + 1, p.at)
  if not done then
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
  redis.call('HSET', k_wf, 'h', done, 'v', version + 1, 's', 'COMPLETED', 'r', remaining)
  redis.call('ZREM', p.prefix .. ':idx:RUNNING', p.wf)
  redis.call('ZADD', p.prefix .. ':idx:COMPLETED', 0, p.wf)
  redis.call('ZADD', p.prefix .. ':finished', p.at_ms, p.wf)
  return '{"event_type":"workflow_completed","timestamp":"' .. p.at .. '","payload":{"workflow_id":'
    .. cjson.encode(p.wf) .. ',"status":"COMPLETED","result":{"outputs":{' .. table.concat(parts, ',') .. '}}}}'
end
