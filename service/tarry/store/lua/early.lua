-- Keep a Resume for a wait node the execution has not reached yet (Op.KEEP_EARLY), in the
-- order accepted. The version is not bumped: a driver's commit checks the field 'early'
-- instead (commit.lua ARGV 18-19), and the transition that reaches the node takes it.
-- KEYS: 1 state hash, 2 events stream, 3 the waiting-node index of that node,
--       4 request answer key (only read / written when has_request is '1')
-- ARGV: 1 the entry (a JSON object: tarry.engine._model.EarlyInput), 2 event json,
--       3 events maxlen, 4 "<PUBLISH|SPUBLISH> <the execution's channel>", 5 has request id,
--       6 request answer ttl s, 7 the statuses it may be kept in, space-separated (from the
--       engine's transition table: keep_early), 8 the execution id
local state = KEYS[1]
if ARGV[5] == '1' then
  local answer = redis.call('GET', KEYS[4])
  if answer then return {'DUP', answer} end
end
local st = redis.call('HGET', state, 'st')
if not st then return {'GONE'} end
if not string.find(' ' .. ARGV[7] .. ' ', ' ' .. st .. ' ', 1, true) then
  return {'STATUS', st}
end
if redis.call('ZSCORE', KEYS[3], ARGV[8]) then return {'WAITING'} end
-- The field is a JSON array of entries: appended to as text, so that no value is
-- decoded and encoded again here (cjson would round numbers).
local early = redis.call('HGET', state, 'early')
if early then
  early = string.sub(early, 1, -2) .. ',' .. ARGV[1] .. ']'
else
  early = '[' .. ARGV[1] .. ']'
end
local seq = tonumber(redis.call('HGET', state, 'seq') or '0') + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 't', 'resume_kept', 'd', ARGV[2])
redis.call('HSET', state, 'early', early, 'seq', seq)
local pub, ch = string.match(ARGV[4], '(%S+) (%S+)')
redis.call(pub, ch, seq)
local h = redis.call('HMGET', state, 'v', 'st', 'seq', 'sreq', 'doc', 'early')
if ARGV[5] == '1' then
  redis.call('SET', KEYS[4], cjson.encode({v = h[1], st = h[2], seq = h[3], sreq = h[4] or false,
                                           doc = h[5], early = h[6]}), 'EX', ARGV[6])
end
return {'OK', h[1], h[2], h[3], h[4] or false, h[5], h[6]}
