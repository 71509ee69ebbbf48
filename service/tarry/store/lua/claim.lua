-- Take the lease of an execution, for a due timer or because its lease expired.
-- KEYS: 1 state hash, 2 timers zset, 3 leases zset
-- ARGV: 1 execution id, 2 timer member ('' = lease recovery), 3 owner, 4 now ms, 5 lease expiry ms,
--       6 horizon ms: a timer due within it may be claimed early (its driver waits for it)
local member = ARGV[2]
local now = tonumber(ARGV[4])
local st = redis.call('HGET', KEYS[1], 'st')
if (not st) or st == 'COMPLETED' or st == 'FAILED' or st == 'CANCELLED'
    or (member ~= '' and st == 'SUSPENDED') then
  -- Nothing to fire: timers of a suspended execution fire after its Resume.
  if member ~= '' then redis.call('ZREM', KEYS[2], member) end
  return {'GONE'}
end
if member ~= '' then
  local due = redis.call('ZSCORE', KEYS[2], member)
  if (not due) or tonumber(due) > now + tonumber(ARGV[6]) then return {'NOTDUE'} end
end
local expiry = redis.call('ZSCORE', KEYS[3], ARGV[1])
if expiry and tonumber(expiry) > now then
  -- A live process drives this execution and fires the timer itself; look again when its
  -- lease would have run out.
  if member ~= '' then redis.call('ZADD', KEYS[2], expiry, member) end
  return {'BUSY'}
end
if member == '' and not expiry then return {'GONE'} end
if member ~= '' then redis.call('ZREM', KEYS[2], member) end
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'own', ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'st', 'seq', 'sreq', 'doc')
return {'OK', v, h[1], h[2], h[3] or false, h[4]}
