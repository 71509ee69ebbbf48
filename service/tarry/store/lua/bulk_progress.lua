-- Record how far the holder of a batch's lease got, and renew the lease.
-- KEYS: 1 the batch's hash, 2 the batches zset, 3 the batch's items list
-- ARGV: 1 owner, 2 lease ttl ms, 3 position, 4 applied, 5 skipped, 6 failed (to add),
--       7 failures (JSON), 8 done ('1': the batch is DONE), 9 the batch id,
--       10 seconds an ended batch is kept
if redis.call('HGET', KEYS[1], 'st') ~= 'RUNNING' or redis.call('HGET', KEYS[1], 'own') ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HINCRBY', KEYS[1], 'applied', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[6])
redis.call('HSET', KEYS[1], 'pos', ARGV[3], 'failures', ARGV[7], 'updated', now)
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'st', 'DONE')
  redis.call('HDEL', KEYS[1], 'own')
  redis.call('ZREM', KEYS[2], ARGV[9])
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  redis.call('DEL', KEYS[3])
else
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[9])
end
return 1
