// Lua run by Redis. Every script gets KEYS[1] = the installation's key prefix (with a hash tag, so
// every key of an installation is in one Cluster slot) and ARGV[1] = the change feed's MAXLEN.
// Scripts keep the indexes in step and append to the change feed in the same atomic step as the
// write. The transition table is NOT here: TypeScript decides the next record, `commit` writes it.

const COMMON = `
local P = KEYS[1]
local function emit(t, flag, data)
  local n = redis.call('INCR', P .. 'seq')
  return redis.call('XADD', P .. 'feed', 'MAXLEN', '~', ARGV[1], '*', 'n', n, 't', t, 'f', flag, 'd', data)
end
-- Byte order (like JS '<' on ASCII names); Lua's own '<' follows the server's locale.
local function lt(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function unindex(s)
  if s.state == 'Ready' then
    local z = P .. 'r:' .. s.fleet .. ':' .. s.node
    redis.call('ZREM', z, s.name)
    if redis.call('ZCARD', z) == 0 then
      redis.call('SREM', P .. 'rn:' .. s.fleet, s.node)
      if redis.call('SCARD', P .. 'rn:' .. s.fleet) == 0 then redis.call('SREM', P .. 'rf', s.fleet) end
    end
  elseif s.state == 'Allocated' then
    if redis.call('HINCRBY', P .. 'an:' .. s.fleet, s.node, -1) <= 0 then
      redis.call('HDEL', P .. 'an:' .. s.fleet, s.node)
    end
  end
end
local function index(s)
  if s.state == 'Ready' then
    redis.call('ZADD', P .. 'r:' .. s.fleet .. ':' .. s.node, string.format('%d', s.createdAt), s.name)
    redis.call('SADD', P .. 'rn:' .. s.fleet, s.node)
    redis.call('SADD', P .. 'rf', s.fleet)
  elseif s.state == 'Allocated' then
    redis.call('HINCRBY', P .. 'an:' .. s.fleet, s.node, 1)
  end
end
`;

/**
 * ARGV: 2 fleet ('' = any), 3 composition id, 4 match labels (JSON), 5 metadata (JSON), 6 token, 7 now (ms).
 * Returns {'OK', allocation JSON, feed id | ''} or {error code, detail}.
 * The choice is core's selectServer: node by compareNodes over the allocated count of the fleets
 * considered, then the oldest (createdAt, then name) Ready server matching the labels.
 */
export const ALLOCATE = `${COMMON}
local fleet, comp = ARGV[2], ARGV[3]
local existing = redis.call('HGET', P .. 'allocs', comp)
if existing then
  if fleet ~= '' then
    local a = cjson.decode(existing)
    if a.fleet ~= fleet then return {'FAILED_PRECONDITION', a.fleet} end
  end
  return {'OK', existing, ''}
end
local sched = 'Packed'
local fleets
if fleet ~= '' then
  sched = redis.call('HGET', P .. 'sched', fleet)
  if not sched then return {'NOT_FOUND', fleet} end
  fleets = {fleet}
else
  fleets = redis.call('SMEMBERS', P .. 'rf')
end
local labels = cjson.decode(ARGV[4])
local anyLabels = next(labels) ~= nil
local nodes, counts = {}, {}
for _, f in ipairs(fleets) do
  for _, node in ipairs(redis.call('SMEMBERS', P .. 'rn:' .. f)) do
    if counts[node] == nil then
      counts[node] = 0
      nodes[#nodes + 1] = node
    end
  end
end
for _, f in ipairs(fleets) do
  local an = redis.call('HGETALL', P .. 'an:' .. f)
  for i = 1, #an, 2 do
    if counts[an[i]] ~= nil then counts[an[i]] = counts[an[i]] + tonumber(an[i + 1]) end
  end
end
local packed = sched == 'Packed'
table.sort(nodes, function(a, b)
  local ca, cb = counts[a], counts[b]
  if ca ~= cb then
    if packed then return ca > cb else return ca < cb end
  end
  return lt(a, b)
end)
local function matches(name)
  local s = cjson.decode(redis.call('HGET', P .. 'servers', name))
  for k, v in pairs(labels) do
    if s.labels[k] ~= v then return false end
  end
  return true
end
-- Oldest matching member of one node's Ready set: {name, createdAt} or nil.
local function oldest(z)
  if not anyLabels then
    local r = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if r[1] then return {r[1], tonumber(r[2])} end
    return nil
  end
  local start = 0
  while true do
    local r = redis.call('ZRANGE', z, start, start + 49, 'WITHSCORES')
    if #r == 0 then return nil end
    for i = 1, #r, 2 do
      if matches(r[i]) then return {r[i], tonumber(r[i + 1])} end
    end
    start = start + 50
  end
end
local chosen
for _, node in ipairs(nodes) do
  for _, f in ipairs(fleets) do
    local c = oldest(P .. 'r:' .. f .. ':' .. node)
    if c and (not chosen or c[2] < chosen[2] or (c[2] == chosen[2] and lt(c[1], chosen[1]))) then chosen = c end
  end
  if chosen then break end
end
if not chosen then return {'RESOURCE_EXHAUSTED', ''} end
local now = tonumber(ARGV[7])
local s = cjson.decode(redis.call('HGET', P .. 'servers', chosen[1]))
unindex(s)
s.state = 'Allocated'
s.compositionId = comp
s.stateChangedAt = now
s.version = s.version + 1
index(s)
local sj = cjson.encode(s)
redis.call('HSET', P .. 'servers', s.name, sj)
local a = {
  compositionId = comp, serverName = s.name, fleet = s.fleet, region = s.region, address = s.address,
  ports = s.ports, token = ARGV[6], allocatedAt = now, metadata = cjson.decode(ARGV[5])
}
local aj = cjson.encode(a)
redis.call('HSET', P .. 'allocs', comp, aj)
emit('server', '0', sj)
return {'OK', aj, emit('allocation', '0', aj)}
`;

/**
 * Compare-and-set of one server record, with the allocation it ends.
 * ARGV: 2 server name; 3 expected: 'new' (must not exist), '*' (leave the server alone) or its version;
 * 4 the new record JSON ('' removes it); 5 allocation op: '' | 'end' (end the composition's allocation if
 * it is on this server) | 'release' (the allocation must exist and be on ARGV[7]); 6 composition id;
 * 7 release: expected server of the allocation; 8 '1': refuse while the server's lease exists.
 * Returns {'OK', last feed id} or {error code, detail}: 'CONFLICT' (the version or the allocation moved:
 * re-read and retry), 'NOT_FOUND' (no such server), 'ALREADY_EXISTS', 'GONE' (no allocation to release),
 * 'LEASED' (the lease was renewed meanwhile).
 */
export const COMMIT = `${COMMON}
local name, expected, nj, op, comp = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local oldraw = redis.call('HGET', P .. 'servers', name)
if expected == 'new' then
  if oldraw then return {'ALREADY_EXISTS', name} end
elseif expected ~= '*' then
  if not oldraw then return {'NOT_FOUND', name} end
  local v = string.format('%d', cjson.decode(oldraw).version)
  if v ~= expected then return {'CONFLICT', v} end
end
if ARGV[8] == '1' then
  if redis.call('EXISTS', P .. 'lease:' .. name) == 1 then return {'LEASED', name} end
  redis.call('HDEL', P .. 'leased', name)
end
local araw
if op == 'release' then
  araw = redis.call('HGET', P .. 'allocs', comp)
  if not araw then return {'GONE', comp} end
  if cjson.decode(araw).serverName ~= ARGV[7] then return {'CONFLICT', 'allocation'} end
elseif op == 'end' then
  araw = redis.call('HGET', P .. 'allocs', comp)
  if araw and cjson.decode(araw).serverName ~= name then araw = nil end
end
local id = ''
if expected ~= '*' then
  if oldraw then unindex(cjson.decode(oldraw)) end
  if nj == '' then
    redis.call('HDEL', P .. 'servers', name)
    redis.call('DEL', P .. 'lease:' .. name)
    redis.call('HDEL', P .. 'leased', name)
  else
    index(cjson.decode(nj))
    redis.call('HSET', P .. 'servers', name, nj)
  end
end
-- Event order as the memory store: an ended allocation before the server change, a release after it.
if op == 'end' and araw then
  redis.call('HDEL', P .. 'allocs', comp)
  id = emit('allocation', '1', araw)
end
if expected ~= '*' then
  if nj == '' then id = emit('server', '1', oldraw) else id = emit('server', '0', nj) end
end
if op == 'release' then
  redis.call('HDEL', P .. 'allocs', comp)
  id = emit('allocation', '1', araw)
end
return {'OK', id}
`;

/** ARGV: 2 fleet name, 3 fleet JSON ('' removes), 4 scheduling. Returns {'OK', feed id} or {'NOT_FOUND', name}. */
export const PUT_FLEET = `${COMMON}
local name = ARGV[2]
if ARGV[3] == '' then
  local old = redis.call('HGET', P .. 'fleets', name)
  if not old then return {'NOT_FOUND', name} end
  redis.call('HDEL', P .. 'fleets', name)
  redis.call('HDEL', P .. 'sched', name)
  return {'OK', emit('fleet', '1', old)}
end
redis.call('HSET', P .. 'fleets', name, ARGV[3])
redis.call('HSET', P .. 'sched', name, ARGV[4])
return {'OK', emit('fleet', '0', ARGV[3])}
`;

/** ARGV: 2 server name, 3 ttl (ms). The lease key expires by itself; its expired event marks the server. */
export const RENEW_LEASE = `
local P = KEYS[1]
if redis.call('HEXISTS', P .. 'servers', ARGV[2]) == 0 then return 0 end
redis.call('SET', P .. 'lease:' .. ARGV[2], ARGV[3], 'PX', ARGV[3])
redis.call('HSET', P .. 'leased', ARGV[2], ARGV[3])
return 1
`;

/** Whole state and the feed position it matches, atomically: {seq, last id, fleets, servers, allocations}. */
export const SNAPSHOT = `
local P = KEYS[1]
local last = redis.call('XREVRANGE', P .. 'feed', '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {
  redis.call('GET', P .. 'seq') or '0', id,
  redis.call('HVALS', P .. 'fleets'), redis.call('HVALS', P .. 'servers'), redis.call('HVALS', P .. 'allocs')
}
`;

/** Feed position only: {seq, last id}. */
export const POSITION = `
local P = KEYS[1]
local last = redis.call('XREVRANGE', P .. 'feed', '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {redis.call('GET', P .. 'seq') or '0', id}
`;
