-- Stop a RUNNING batch (CANCELLED), or hand back a lease (ARGV 1 'release').
-- KEYS: 1 the batch's hash, 2 the batches zset, 3 the batch's items list
-- ARGV: 1 'cancel' or 'release', 2 the batch id, 3 seconds an ended batch is kept,
--       4 the owner (release)
if ARGV[1] == 'release' then
  if redis.call('HGET', KEYS[1], 'own') == ARGV[4] and redis.call('HGET', KEYS[1], 'st') == 'RUNNING' then
    redis.call('HDEL', KEYS[1], 'own')
    redis.call('ZADD', KEYS[2], 0, ARGV[2])
  end
  return 1
end
if redis.call('HGET', KEYS[1], 'st') == 'RUNNING' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[1], 'st', 'CANCELLED', 'updated', now)
  redis.call('HDEL', KEYS[1], 'own')
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[3])
end
return 1
