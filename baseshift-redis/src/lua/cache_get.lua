-- The template cache's read. KEYS[1]: the template id's generation key.
-- ARGV: a fresh generation (used if none is set), the entry key prefix, the entry name.
-- Reply: {generation, cached JSON or false}. Entries live under a generation, and every
-- write sets a new one, so an entry cached before a write is never read after it.
local g = redis.call('GET', KEYS[1])
if not g then
  g = ARGV[1]
  redis.call('SET', KEYS[1], g)
end
return {g, redis.call('GET', ARGV[2] .. g .. ':' .. ARGV[3])}
