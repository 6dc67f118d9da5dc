-- Before an idle wait: promotes due retries. KEYS: delayed, ready. ARGV[1]: now ms.
-- Reply: {promoted count, next due ms or false}.
local moved = promote(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {moved, first[2] or false}
