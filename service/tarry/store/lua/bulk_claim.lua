-- Take the lease of RUNNING batches nobody holds (their lease ran out, or was handed back),
-- and renew the leases `owner` holds. Times are Redis's (TIME).
-- KEYS: 1 the batches zset (score: when the lease ends, ms; 0: free)
-- ARGV: 1 owner, 2 lease ttl ms, 3 at most this many to take, 4 the prefix of a batch's
--       hash key (the id follows; it shares the zset's hash tag: one slot)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local bulk = ARGV[4] .. id
  if redis.call('HGET', bulk, 'st') == 'RUNNING' then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    redis.call('HSET', bulk, 'own', ARGV[1])
    out[#out + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
