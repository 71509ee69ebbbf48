-- One transition of one execution, atomically.
-- KEYS: 1 state hash, 2 events stream, 3 timers zset, 4 leases zset, 5 index all,
--       6 index of the previous status, 7 index of the new status, 8 index of the workflow,
--       9 request answer key (only read / written when has_request is '1'),
--       10 index of (workflow, previous status), 11 index of (workflow, new status),
--       12 expiry zset (terminal executions by when retention removes them),
--       13 change log stream,
--       14... index keys: at creation the tag indexes it joins (their names kept in the field
--       'ix', for delete.lua), then the waiting-node indexes it joins, then those it leaves
-- ARGV: 1 expected version (0 = create), 2 new status, 3 document, 4 owner,
--       5 lease mode (hold | release | keep), 6 lease ttl ms (from Redis's clock),
--       7 check suspend request, 8 clear suspend request, 9 created ms (index score),
--       10 execution id, 11 workflow, 12 events maxlen, 13 has request id,
--       14 request answer ttl s, 15 "<PUBLISH or SPUBLISH> <execution channel> <control> <timers>",
--       16 when a terminal execution expires (ms; 0: kept; -1: it is terminal no more,
--       its expiry goes), 17 n events,
--       18 check the early Resumes ('1': refuse with EARLY unless the field 'early' is
--       19), 20 '=' to write 21 as 'early' ('' deletes it), '-' to leave it;
--       then n (type, json) event pairs, then n timers to set as (member, due ms), then n timers to clear as member,
--       then how many of KEYS 14... are tag indexes, and how many waiting-node indexes it joins,
--       then the change log entry (JSON; '' for none) and the change log's maxlen
local state, events, timers, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local idx_all, idx_prev, idx_new, idx_wf, answer_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local idx_pair_prev, idx_pair_new, expiry, changes = KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local expected, status, doc, owner = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local lease_mode, lease_ttl = ARGV[5], tonumber(ARGV[6])
local check_sreq, clear_sreq, created = ARGV[7] == '1', ARGV[8] == '1', ARGV[9]
local id, workflow, maxlen = ARGV[10], ARGV[11], ARGV[12]
local has_request, request_ttl, channels = ARGV[13] == '1', ARGV[14], ARGV[15]
local expire_at = tonumber(ARGV[16])

local function snapshot()
  local h = redis.call('HMGET', state, 'v', 'st', 'seq', 'sreq', 'doc', 'early')
  return {h[1], h[2], h[3], h[4] or false, h[5], h[6] or false}
end

if has_request then
  local answer = redis.call('GET', answer_key)
  if answer then return {'DUP', answer} end
end

local v = redis.call('HGET', state, 'v')
if expected == 0 then
  if v then
    local s = snapshot()
    return {'EXISTS', s[1], s[2], s[3], s[4], s[5], s[6], redis.call('HGET', state, 'wf')}
  end
else
  if (not v) or tonumber(v) ~= expected then return {'CONFLICT', v or '0'} end
  if check_sreq then
    local sreq = redis.call('HGET', state, 'sreq')
    if sreq then return {'SREQ', sreq} end
  end
  if ARGV[18] == '1' then
    -- A Resume kept for a wait node since the transition read the execution: it may be
    -- for a node this transition reaches.
    local early = redis.call('HGET', state, 'early') or ''
    if early ~= ARGV[19] then return {'EARLY', early} end
  end
end

local seq = tonumber(redis.call('HGET', state, 'seq') or '0')
local i = 22
local n = tonumber(ARGV[17])
for _ = 1, n do
  seq = seq + 1
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  i = i + 2
end

local nv = expected + 1
redis.call('HSET', state, 'v', nv, 'st', status, 'seq', seq, 'doc', doc)
if expected == 0 then
  redis.call('HSET', state, 'wf', workflow)
  redis.call('ZADD', idx_all, created, id)
  redis.call('ZADD', idx_wf, created, id)
  redis.call('ZADD', idx_new, created, id)
  redis.call('ZADD', idx_pair_new, created, id)
elseif idx_prev ~= idx_new then
  redis.call('ZREM', idx_prev, id)
  redis.call('ZADD', idx_new, created, id)
  redis.call('ZREM', idx_pair_prev, id)
  redis.call('ZADD', idx_pair_new, created, id)
end
if clear_sreq then redis.call('HDEL', state, 'sreq') end
if ARGV[20] == '=' then
  if ARGV[21] == '' then redis.call('HDEL', state, 'early')
  else redis.call('HSET', state, 'early', ARGV[21]) end
end
if expire_at > 0 then redis.call('ZADD', expiry, expire_at, id)
elseif expire_at < 0 then redis.call('ZREM', expiry, id) end

if lease_mode == 'hold' then
  -- Leases run on Redis's clock, so that servers with skewed clocks agree on them.
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', leases, now + lease_ttl, id)
  redis.call('HSET', state, 'own', owner)
elseif lease_mode == 'release' then
  redis.call('ZREM', leases, id)
  redis.call('HDEL', state, 'own')
end

n = tonumber(ARGV[i])
i = i + 1
local earliest = nil
for _ = 1, n do
  redis.call('ZADD', timers, ARGV[i + 1], ARGV[i])
  local due = tonumber(ARGV[i + 1])
  if (not earliest) or due < earliest then earliest = due end
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('ZREM', timers, ARGV[i])
  i = i + 1
end

local n_tags, n_join = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
local change, changes_maxlen = ARGV[i + 2], ARGV[i + 3]
if n_tags > 0 then
  local joined = {}
  for k = 14, 13 + n_tags do
    redis.call('ZADD', KEYS[k], created, id)
    joined[#joined + 1] = KEYS[k]
  end
  redis.call('HSET', state, 'ix', table.concat(joined, ' '))
end
for k = 14 + n_tags, 13 + n_tags + n_join do redis.call('ZADD', KEYS[k], created, id) end
for k = 14 + n_tags + n_join, #KEYS do redis.call('ZREM', KEYS[k], id) end
if change ~= '' then
  -- The id Redis gives the entry (its clock's ms) is the watchers' cursor.
  redis.call('XADD', changes, 'MAXLEN', '~', changes_maxlen, '*', 'c', change, 's', seq)
end

if has_request then
  -- The answer a repeated request gets: the execution as just written (as stored, in strings).
  local sreq = false
  if not clear_sreq then sreq = redis.call('HGET', state, 'sreq') or false end
  redis.call('SET', answer_key, cjson.encode({v = tostring(nv), st = status, seq = tostring(seq),
                                              sreq = sreq, doc = doc,
                                              early = redis.call('HGET', state, 'early') or false}),
             'EX', request_ttl)
end
-- Watchers and waiters follow the execution's channel; whoever runs it must hear of a
-- cancellation; every timer loop must hear of a timer that may be due before it looks.
local pub, own_ch, ctl_ch, timers_ch = string.match(channels, '(%S+) (%S+) (%S+) (%S+)')
redis.call(pub, own_ch, seq)
if status == 'CANCELLED' then redis.call(pub, ctl_ch, id .. ' ' .. seq) end
if earliest then redis.call(pub, timers_ch, string.format('%d', earliest)) end
return {'OK', nv, seq}
