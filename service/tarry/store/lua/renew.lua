-- Renew this server's leases, or release them; leave alone those another server holds now.
-- KEYS: 1 leases zset, then the state hash of each execution (in ARGV's order)
-- ARGV: 1 owner, 2 lease ttl ms from Redis's clock (0: release, the lease expires now),
--       then the execution ids
-- Returns the ids of the executions this owner no longer holds: their drivers must stop.
local owner = ARGV[1]
local ttl = tonumber(ARGV[2])
local expiry = 0
if ttl > 0 then
  local t = redis.call('TIME')
  expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
end
local lost = {}
for i = 2, #KEYS do
  local id = ARGV[i + 1]
  if redis.call('HGET', KEYS[i], 'own') == owner and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], expiry, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
