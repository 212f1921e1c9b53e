/*
 * Lua run atomically by Redis. History items and journal entries are JSON that starts with
 * {"id":"<26-character id>", so a script reads an id as string.sub(item, 8, 33).
 */

/** Per-op key layout: the history list, the data hash, the meta hash (version, floors) and the journal. */
export const KEYS_PER_OP = 4;

const HELPERS = `
local function expire(key, ttl) if ttl > 0 then redis.call('PEXPIRE', key, ttl) end end
local function item_id(item) return string.sub(item, 8, 33) end
`;

/**
 * Applies a batch of ops and returns, per op, 1 if it landed in a copy Redis holds (0: no copy
 * to change, or one it deleted; a cache then drops copies again once the durable write is in,
 * so a fill that read the durable tier before that write cannot linger). KEYS: subscribers set, its version, dirty set, pending counter, then
 * h, d, m, j per op. ARGV: role ('c' cache, 'd' durable), history limit, ttl history, ttl user
 * data, ttl subscribers, then kind, id, user, payload, journal entry ('' if not pending, '=' for the payload itself) per op.
 * A cache only changes copies it holds; a write bumps the user's version so racing fills lose.
 */
export const WRITE = `${HELPERS}
local durable = ARGV[1] == 'd'
local limit, ttl_h, ttl_u, ttl_s = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ttl_m = math.max(ttl_h, ttl_u)
local subs, subs_v, dirty, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local function insert_ordered(h, id, item)
  local last = redis.call('LINDEX', h, -1)
  if not last or item_id(last) < id then redis.call('RPUSH', h, item) return end
  local n = redis.call('LLEN', h)
  for i = -1, -n, -1 do
    local cur = redis.call('LINDEX', h, i)
    local cur_id = item_id(cur)
    if cur_id == id then return end
    if cur_id < id then redis.call('LINSERT', h, 'AFTER', cur, item) return end
  end
  redis.call('LPUSH', h, item)
end

local function set_field(d, m, field, id, value)
  local stamp = redis.call('HGET', d, field .. 'v')
  if stamp and stamp >= id then return end
  if durable and id <= (redis.call('HGET', m, 'df') or '') then return end
  if value == '' then redis.call('HDEL', d, field) else redis.call('HSET', d, field, value) end
  redis.call('HSET', d, field .. 'v', id, '_', '1')
end

local function raise_floor(h, m, id)
  if id <= (redis.call('HGET', m, 'f') or '') then return end
  redis.call('HSET', m, 'f', id)
  local keep = {}
  for _, item in ipairs(redis.call('LRANGE', h, 0, -1)) do
    if item_id(item) > id then keep[#keep + 1] = item end
  end
  redis.call('DEL', h)
  for i = 1, #keep, 1000 do redis.call('RPUSH', h, unpack(keep, i, math.min(i + 999, #keep))) end
end

local held = {}
for i = 0, (#ARGV - 5) / 5 - 1 do
  local a, k = 5 + i * 5, 4 + i * 4
  local kind, id, user, payload, entry = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local h, d, m, j = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  held[i + 1] = durable and 1 or 0
  if kind == 'append' then
    if durable then
      if id > (redis.call('HGET', m, 'f') or '') then insert_ordered(h, id, payload) end
    elseif redis.call('EXISTS', h) == 1 then
      insert_ordered(h, id, payload)
      redis.call('LTRIM', h, -limit, -1)
      expire(h, ttl_h)
      held[i + 1] = 1
    end
  elseif kind == 'clear' then
    if durable then raise_floor(h, m, id) else redis.call('DEL', h) end
  elseif kind == 'phone' or kind == 'booking' then
    if durable or redis.call('EXISTS', d) == 1 then
      set_field(d, m, kind == 'phone' and 'p' or 'b', id, payload)
      expire(d, ttl_u)
      held[i + 1] = 1
    end
  elseif kind == 'subscribe' then
    local stamp = redis.call('HGET', m, 'sv')
    local present = redis.call('EXISTS', subs) == 1
    if present then held[i + 1] = 1 end
    if (not stamp or stamp < id) and (not durable or id > (redis.call('HGET', m, 'df') or '')) then
      redis.call('HSET', m, 'sv', id)
      if durable or present then
        if payload == '1' then redis.call('SADD', subs, user) else redis.call('SREM', subs, user) end
        expire(subs, ttl_s)
      end
    end
    redis.call('INCR', subs_v)
    expire(subs_v, ttl_s)
  elseif kind == 'delete' then
    redis.call('DEL', h, d)
    redis.call('SREM', subs, user)
    redis.call('INCR', subs_v)
    expire(subs_v, ttl_s)
    if durable and id > (redis.call('HGET', m, 'df') or '') then
      redis.call('HSET', m, 'df', id, 'sv', id)
      raise_floor(h, m, id)
    end
    -- Erased means erased: pending entries older than the delete go too.
    local kept, dropped = {}, 0
    for _, e in ipairs(redis.call('LRANGE', j, 0, -1)) do
      if item_id(e) > id then kept[#kept + 1] = e else dropped = dropped + 1 end
    end
    if dropped > 0 then
      redis.call('DEL', j)
      for x = 1, #kept, 1000 do redis.call('RPUSH', j, unpack(kept, x, math.min(x + 999, #kept))) end
      redis.call('DECRBY', pending, dropped)
    end
  end
  redis.call('HINCRBY', m, 'v', 1)
  expire(m, ttl_m)
  if entry ~= '' then
    redis.call('RPUSH', j, entry == '=' and payload or entry)
    redis.call('SADD', dirty, user)
    redis.call('INCR', pending)
  end
end
return held
`;

/** KEYS: h, m, j. ARGV: limit. A hit is the items; a miss is {0, version, journal entries...}. */
export const READ_HISTORY = `
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #items > 0 then return items end
local out = {0, redis.call('HGET', KEYS[2], 'v') or '0'}
for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do out[#out + 1] = e end
return out
`;

/** KEYS: d, m, j. A hit is {1, phone, booking}; a miss is {0, version, journal entries...}. */
export const READ_USER = `
local v = redis.call('HMGET', KEYS[1], '_', 'p', 'b')
if v[1] then return {1, v[2], v[3]} end
local out = {0, redis.call('HGET', KEYS[2], 'v') or '0'}
for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do out[#out + 1] = e end
return out
`;

/** KEYS: subscribers set, its version. ARGV: '' for all members, else a user. Miss: {0, version}. */
export const READ_SUBSCRIBERS = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, redis.call('GET', KEYS[2]) or '0'} end
if ARGV[1] == '' then return {1, redis.call('SMEMBERS', KEYS[1])} end
return {1, redis.call('SISMEMBER', KEYS[1], ARGV[1])}
`;

/** KEYS: h, m. ARGV: version, ttl, items... Installs a copy only if nothing was written since the miss. */
export const FILL_HISTORY = `
if (redis.call('HGET', KEYS[2], 'v') or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #ARGV, 1000 do redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
if #ARGV > 2 and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/** KEYS: d, m. ARGV: version, ttl, then field/value pairs. */
export const FILL_USER = `
if (redis.call('HGET', KEYS[2], 'v') or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '_', '1', unpack(ARGV, 3))
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/** KEYS: subscribers set, its version. ARGV: version, ttl, members... ('' marks a complete set). */
export const FILL_SUBSCRIBERS = `
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SADD', KEYS[1], '')
for i = 3, #ARGV, 1000 do redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/**
 * KEYS: j, dirty, pending. ARGV: user, entries the durable tier now has. Pops each entry only while
 * it is at the head (so an entry another syncer already removed, or one written since, is safe);
 * drops the user from the dirty set once the journal is empty. Returns what is left.
 */
export const ACK = `
local popped = 0
for i = 2, #ARGV do
  if redis.call('LINDEX', KEYS[1], 0) == ARGV[i] then
    redis.call('LPOP', KEYS[1])
    popped = popped + 1
  end
end
if popped > 0 then redis.call('DECRBY', KEYS[3], popped) end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return left
`;

/** KEYS: lock. ARGV: token. Deletes the lock only if this holder still owns it. */
export const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** KEYS: h, m. ARGV: limit. The durable role's read: {floor, items...}. */
export const READ_HISTORY_DURABLE = `
local out = {redis.call('HGET', KEYS[2], 'f') or ''}
for _, item in ipairs(redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)) do out[#out + 1] = item end
return out
`;
