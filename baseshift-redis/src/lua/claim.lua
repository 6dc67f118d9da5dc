-- claim. KEYS: ready, delayed, leases, outbox, seq.
-- ARGV[1]: JSON {prefix, now_ms, now, limit, exp_ms, exp, owner, token, exclude, caps}.
-- Reply: {next due ms or false, record 1, output 1, record 2, output 2, ...}.
local p = cjson.decode(ARGV[1])
local k_ready, k_delayed, k_leases, k_outbox, k_seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

promote(k_delayed, k_ready, p.now_ms)

local excluded = {}
for _, t in ipairs(p.exclude) do
  excluded[t] = true
end
local taken = {}
local keyed = {}
local picks = {}
local function consider(m, from)
  local e = cjson.decode(m)
  local t = e[3]
  if excluded[t] then return end
  local cap = p.caps[t]
  if cap ~= nil and (taken[t] or 0) >= cap then return end
  -- A ready job with a concurrency key needs a free slot of its key (members carry the
  -- key and limit); an expired lease already holds one.
  local key = e[5]
  if from == 2 and key then
    if keyed[key] == nil then
      keyed[key] = tonumber(redis.call('HGET', p.prefix .. ':ckeys', key) or '0')
    end
    if keyed[key] >= e[6] then return end
    keyed[key] = keyed[key] + 1
  end
  if cap ~= nil then
    taken[t] = (taken[t] or 0) + 1
  end
  picks[#picks + 1] = {m, e, from}
end

-- Expired leases first, then the ready queue by score. Skipped entries (excluded types,
-- capped types) are bounded per claim, so one claim never walks an unbounded queue.
-- The first page of each source is about as long as the claim (every member fetched is
-- a string the script makes); the next ones are longer.
local batch = math.max(64, p.limit * 4)
local budget = p.limit * 20 + 1000
local sources = {
  function(off, n) return redis.call('ZRANGEBYSCORE', k_leases, '-inf', p.now_ms, 'LIMIT', off, n) end,
  function(off, n) return redis.call('ZRANGE', k_ready, off, off + n - 1) end,
}
for s, fetch in ipairs(sources) do
  local off, n = 0, math.min(batch, p.limit + 8)
  while #picks < p.limit and budget > 0 do
    local page = fetch(off, n)
    for _, m in ipairs(page) do
      if #picks >= p.limit or budget <= 0 then break end
      budget = budget - 1
      consider(m, s)
    end
    if #page < n then break end
    off, n = off + n, batch
  end
end

local reply = {false}
local events = {}
-- The picks leave their queue, and the claimed ones enter the lease index, in one
-- command per set (not one per job); a member both left and re-entered `leases` (an
-- expired lease claimed again) is removed before it is added. A claim rewrites only the
-- record's head (see job_head in lib.lua): the record JSON after it is kept as it is.
local unready, unleased, leased = {}, {}, {}
local owner, exp, now = cjson.encode(p.owner), cjson.encode(p.exp), cjson.encode(p.now)
for i, pick in ipairs(picks) do
  local m, e, from = pick[1], pick[2], pick[3]
  local wf, job = e[1], e[2]
  local k_jobs = p.prefix .. ':jobs:{' .. wf .. '}'
  local raw = redis.call('HGET', k_jobs, job)
  local status, version, attempt, awaiting, propagated, comp, at_member
  if raw then
    status, version, attempt, awaiting, propagated, comp, at_member = job_peek(raw)
  end
  local claimable = (from == 2 and status == 'READY') or (from == 1 and status == 'RUNNING' and awaiting == '0')
  if from == 1 then
    unleased[#unleased + 1] = m
  else
    unready[#unready + 1] = m
  end
  if claimable then
    -- The member carries the record's concurrency key (see consider).
    if from == 2 and e[5] then
      count_key(p.prefix, e[5], 1)
    end
    attempt = tonumber(attempt) + 1
    local json = head_line('RUNNING', tonumber(version) + 1, attempt, awaiting .. propagated .. comp)
      .. lease_json(owner, cjson.encode(p.token .. '-' .. i), exp) .. '\n' .. now .. '\n' .. string.sub(raw, at_member)
    redis.call('HSET', k_jobs, job, json)
    leased[#leased + 1] = p.exp_ms
    leased[#leased + 1] = m
    events[#events + 1] = job_event(wf, job, 'RUNNING', attempt, p.now)
    reply[#reply + 1] = json
    reply[#reply + 1] = redis.call('HGET', p.prefix .. ':out:{' .. wf .. '}', job)
  end
end
-- `cmd key ...list`, 1 000 list items per call (unpack's stack is bounded; pairs stay whole).
local function in_chunks(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
in_chunks('ZREM', k_leases, unleased)
in_chunks('ZREM', k_ready, unready)
in_chunks('ZADD', k_leases, leased)

push_events(k_outbox, k_seq, events)

local first = redis.call('ZRANGE', k_delayed, 0, 0, 'WITHSCORES')
if first[2] then
  reply[1] = first[2]
end
return reply
