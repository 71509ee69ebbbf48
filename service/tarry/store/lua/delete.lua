-- Remove one finished execution whole: state, event log, and every index entry.
-- KEYS: 1 state hash, 2 events stream, 3 expiry zset, 4 index all, 5 index of its status,
--       6 index of its workflow, 7 index of (workflow, status), 8 leases zset,
--       9... the tag indexes it joined at creation (its field 'ix')
-- ARGV: 1 execution id, 2 the status the caller read, 3 the workflow it read,
--       4 the statuses a delete may start from, space-separated (the transition table)
-- Request answers are left to expire on their own (their TTL); timers were cleared when the
-- execution finished.
local state, events, expiry = KEYS[1], KEYS[2], KEYS[3]
local id, read_status, read_workflow, allowed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local h = redis.call('HMGET', state, 'st', 'wf')
local st, wf = h[1], h[2]
if not st then
  redis.call('ZREM', expiry, id)
  return {'GONE'}
end
if not string.find(' ' .. allowed .. ' ', ' ' .. st .. ' ', 1, true) then
  redis.call('ZREM', expiry, id)  -- not finished (any more): nothing is due
  return {'STATE', st}
end
if st ~= read_status or wf ~= read_workflow then return {'MOVED'} end
redis.call('DEL', state, events)
for k = 3, #KEYS do redis.call('ZREM', KEYS[k], id) end
return {'OK'}
