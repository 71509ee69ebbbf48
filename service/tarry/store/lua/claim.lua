-- Take the lease of an execution, for a due timer or because its lease expired.
-- KEYS: 1 state hash, 2 timers zset, 3 leases zset
-- ARGV: 1 execution id, 2 timer member ('' = lease recovery), 3 owner, 4 lease ttl ms,
--       5 horizon ms: a timer due within it may be claimed early (its driver waits for it),
--       6 take back: '1' also claims a live lease held under this owner's name (a server
--       restarted with its identity proven takes its own executions back at once),
--       7 the statuses the claim may start from, space-separated (from the engine's
--       transition table: claim_timer or take_over)
-- Times are Redis's (TIME), never a server's: a server with a skewed clock neither fires
-- a timer early nor takes a live lease.
local id, member, owner = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HGET', KEYS[1], 'st')
if (not st) or not string.find(' ' .. ARGV[7] .. ' ', ' ' .. st .. ' ', 1, true) then
  -- Nothing to fire or drive: finished, gone, or (a timer) suspended: timers of a
  -- suspended execution fire after its Resume.
  if member ~= '' then redis.call('ZREM', KEYS[2], member) else redis.call('ZREM', KEYS[3], id) end
  return {'GONE'}
end
if member ~= '' then
  local due = redis.call('ZSCORE', KEYS[2], member)
  if (not due) or tonumber(due) > now + tonumber(ARGV[5]) then return {'NOTDUE'} end
end
local expiry = redis.call('ZSCORE', KEYS[3], id)
local ours = ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'own') == owner
if expiry and tonumber(expiry) > now and not ours then
  -- A live process drives this execution and fires the timer itself; look again when its
  -- lease would have run out.
  if member ~= '' then redis.call('ZADD', KEYS[2], expiry, member) end
  return {'BUSY'}
end
if member == '' and not expiry then return {'GONE'} end
if member ~= '' then redis.call('ZREM', KEYS[2], member) end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), id)
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'own', owner)
local h = redis.call('HMGET', KEYS[1], 'st', 'seq', 'sreq', 'doc', 'early')
return {'OK', v, h[1], h[2], h[3] or false, h[4], h[5] or false}
