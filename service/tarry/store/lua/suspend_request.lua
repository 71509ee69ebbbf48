-- Ask a RUNNING execution to suspend at its next node boundary.
-- KEYS: 1 state hash, 2 events stream, 3 request answer key
-- ARGV: 1 reason, 2 event json, 3 events maxlen, 4 "<PUBLISH|SPUBLISH> <execution channel> <control channel>",
--       5 execution id,
--       6 has request id, 7 request answer ttl s,
--       8 the statuses a suspend request may start from, space-separated (from the engine's
--       transition table: request_suspend)
local state = KEYS[1]
if ARGV[6] == '1' then
  local answer = redis.call('GET', KEYS[3])
  if answer then return {'DUP', answer} end
end
local st = redis.call('HGET', state, 'st')
if (not st) or not string.find(' ' .. ARGV[8] .. ' ', ' ' .. st .. ' ', 1, true) then
  return {'STATE', st or ''}
end
if not redis.call('HGET', state, 'sreq') then
  local seq = tonumber(redis.call('HGET', state, 'seq') or '0') + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 't', 'suspend_requested',
             'd', ARGV[2])
  redis.call('HSET', state, 'sreq', ARGV[1], 'seq', seq)
  local pub, own_ch, ctl_ch = string.match(ARGV[4], '(%S+) (%S+) (%S+)')
  redis.call(pub, own_ch, seq)
  redis.call(pub, ctl_ch, ARGV[5] .. ' ' .. seq)
end
local h = redis.call('HMGET', state, 'v', 'st', 'seq', 'sreq', 'doc', 'early')
if ARGV[6] == '1' then
  redis.call('SET', KEYS[3], cjson.encode({v = h[1], st = h[2], seq = h[3], sreq = h[4], doc = h[5],
                                           early = h[6] or false}), 'EX', ARGV[7])
end
return {'OK', h[1], h[2], h[3], h[4], h[5], h[6] or false}
