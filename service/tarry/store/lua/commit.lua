-- One transition of one execution, atomically.
-- KEYS: 1 state hash, 2 events stream, 3 timers zset, 4 leases zset, 5 index all,
--       6 index of the previous status, 7 index of the new status, 8 index of the workflow,
--       9 request answer key (only read / written when ARGV[13] == '1')
-- ARGV: 1 expected version (0 = create), 2 new status, 3 document, 4 owner,
--       5 lease mode (hold | release | keep), 6 lease ttl ms (from Redis's clock), 7 check suspend request,
--       8 clear suspend request, 9 created ms (index score), 10 execution id, 11 workflow,
--       12 events maxlen, 13 has request id, 14 request answer ttl s,
--       15 channels: "<execution channel> <control channel> <timers channel>",
--       16 n events, then n (type, json) pairs, then n timers to set as (member, due ms),
--       then n timers to clear as member
local state = KEYS[1]
local expected = tonumber(ARGV[1])

local function snapshot()
  local h = redis.call('HMGET', state, 'v', 'st', 'seq', 'sreq', 'doc')
  return {h[1], h[2], h[3], h[4] or false, h[5]}
end

if ARGV[13] == '1' then
  local answer = redis.call('GET', KEYS[9])
  if answer then return {'DUP', answer} end
end

local v = redis.call('HGET', state, 'v')
if expected == 0 then
  if v then
    local s = snapshot()
    return {'EXISTS', s[1], s[2], s[3], s[4], s[5], redis.call('HGET', state, 'wf')}
  end
else
  if (not v) or tonumber(v) ~= expected then return {'CONFLICT', v or '0'} end
  if ARGV[7] == '1' then
    local sreq = redis.call('HGET', state, 'sreq')
    if sreq then return {'SREQ', sreq} end
  end
end

local seq = tonumber(redis.call('HGET', state, 'seq') or '0')
local i = 17
local n = tonumber(ARGV[16])
for _ = 1, n do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[12], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  i = i + 2
end

local nv = expected + 1
local status = ARGV[2]
redis.call('HSET', state, 'v', nv, 'st', status, 'seq', seq, 'doc', ARGV[3])
if expected == 0 then
  redis.call('HSET', state, 'wf', ARGV[11])
  redis.call('ZADD', KEYS[5], ARGV[9], ARGV[10])
  redis.call('ZADD', KEYS[8], ARGV[9], ARGV[10])
  redis.call('ZADD', KEYS[7], ARGV[9], ARGV[10])
elseif KEYS[6] ~= KEYS[7] then
  redis.call('ZREM', KEYS[6], ARGV[10])
  redis.call('ZADD', KEYS[7], ARGV[9], ARGV[10])
end
if ARGV[8] == '1' then redis.call('HDEL', state, 'sreq') end

if ARGV[5] == 'hold' then
  -- Leases run on Redis's clock, so that servers with skewed clocks agree on them.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[10])
  redis.call('HSET', state, 'own', ARGV[4])
elseif ARGV[5] == 'release' then
  redis.call('ZREM', KEYS[4], ARGV[10])
  redis.call('HDEL', state, 'own')
end

n = tonumber(ARGV[i])
i = i + 1
local earliest = nil
for _ = 1, n do
  redis.call('ZADD', KEYS[3], ARGV[i + 1], ARGV[i])
  local due = tonumber(ARGV[i + 1])
  if (not earliest) or due < earliest then earliest = due end
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('ZREM', KEYS[3], ARGV[i])
  i = i + 1
end

if ARGV[13] == '1' then
  -- The answer a repeated request gets: the execution as just written (as stored, in strings).
  local sreq = false
  if ARGV[8] ~= '1' then sreq = redis.call('HGET', state, 'sreq') or false end
  redis.call('SET', KEYS[9], cjson.encode({v = tostring(nv), st = status, seq = tostring(seq),
                                           sreq = sreq, doc = ARGV[3]}), 'EX', ARGV[14])
end
-- Watchers and waiters follow the execution's channel; whoever runs it must hear of a
-- cancellation; every timer loop must hear of a timer that may be due before it looks.
local own_ch, ctl_ch, timers_ch = string.match(ARGV[15], '(%S+) (%S+) (%S+)')
redis.call('PUBLISH', own_ch, seq)
if status == 'CANCELLED' then redis.call('PUBLISH', ctl_ch, ARGV[10] .. ' ' .. seq) end
if earliest then redis.call('PUBLISH', timers_ch, string.format('%d', earliest)) end
return {'OK', nv, seq}
