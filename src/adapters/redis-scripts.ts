/*
 * Lua run atomically by Redis. History items and journal entries are JSON that starts with
 * {"id":"<26-character id>", so a script reads an id as string.sub(item, 8, 33).
 */

/** The flags a caller passes in ARGV, named once for the scripts and the adapter. */
export const FLAG = {
  /** The role: Redis is the system of record (nothing expires, floors kept) or a cache. */
  durable: 'durable',
  cache: 'cache',
  /** One Redis: the write changes the shared keys too. A Cluster: the caller does, in their own slots. */
  sharedHere: 'shared-here',
  sharedByCaller: 'shared-by-caller',
  /** A journal entry that is the op's payload itself (an append), not sent twice. */
  entryIsPayload: '=',
} as const;

const HELPERS = `
local function expire(key, ttl) if ttl > 0 then redis.call('PEXPIRE', key, ttl) end end
local function item_id(item) return string.sub(item, 8, 33) end
`;

/**
 * The pending index of a shard is a hash: user -> journal entries not yet acknowledged, counted
 * when they are marked (before or with the entry's write) and uncounted when acknowledged. A user
 * leaves it only when the count says nothing is left, so an unmark can never erase a concurrent
 * mark (a set's SADD of a member already there could be). The counter key is the sum of the counts.
 */
const PENDING = `
local function set_pending(index, pending, user, count)
  local was = tonumber(redis.call('HGET', index, user) or '0')
  if count > 0 then redis.call('HSET', index, user, count) else redis.call('HDEL', index, user) end
  if count ~= was then redis.call('INCRBY', pending, math.max(count, 0) - was) end
end
local function count_pending(index, pending, user, n)
  set_pending(index, pending, user, tonumber(redis.call('HGET', index, user) or '0') + n)
end
`;

/**
 * Applies a batch of ops. Per op, KEYS: h, d, m, j, i (the user's slot: i maps idempotency keys
 * to message ids), then (with FLAG.sharedHere only) subscribers set, its version, pending index, pending counter
 * (shared keys). ARGV: role (FLAG.cache or FLAG.durable), history limit, ttl history, ttl user data,
 * ttl subscribers, and FLAG.sharedHere to change the shared keys here too (one Redis) or FLAG.sharedByCaller to leave them to
 * the caller (a Cluster, where they live in other slots); then kind, id, user, payload, journal
 * entry ('' if not pending, FLAG.entryIsPayload for the payload), idempotency key ('' for none) per op.
 * Returns per op: the id of the earlier message if the op repeats its idempotency key; else +1
 * if it landed in a copy Redis holds (0: no copy to change, or one it deleted; a cache then drops
 * copies again once the durable write is in, so a fill that read the durable tier before that
 * write cannot linger), +2 if it changes the subscription (for the caller's shared-key step), plus
 * 4 x the journal entries a delete dropped (with FLAG.sharedByCaller: the caller takes them off the pending index).
 */
export const WRITE = `${HELPERS}${PENDING}
local durable = ARGV[1] == '${FLAG.durable}'
local limit, ttl_h, ttl_u, ttl_s = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local shared = ARGV[6] == '${FLAG.sharedHere}'
local ttl_m = math.max(ttl_h, ttl_u)

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

local function apply(kind, id, user, payload, entry, h, d, m, j, s, sv, index, pending)
  local held, subscription, dropped = durable and 1 or 0, 0, 0
  if kind == 'append' then
    if durable then
      if id > (redis.call('HGET', m, 'f') or '') then insert_ordered(h, id, payload) end
    else
      -- The hot path: append to a copy that exists; only an out-of-order id or a repeat is redone.
      local n = redis.call('RPUSHX', h, payload)
      if n > 0 then
        held = 1
        if n > 1 and item_id(redis.call('LINDEX', h, -2)) >= id then
          redis.call('RPOP', h)
          insert_ordered(h, id, payload)
        end
        if n > limit then redis.call('LTRIM', h, -limit, -1) end
        expire(h, ttl_h)
      end
    end
  elseif kind == 'clear' then
    if durable then raise_floor(h, m, id) else redis.call('DEL', h) end
  elseif kind == 'phone' or kind == 'booking' then
    if durable or redis.call('EXISTS', d) == 1 then
      set_field(d, m, kind == 'phone' and 'p' or 'b', id, payload)
      expire(d, ttl_u)
      held = 1
    end
  elseif kind == 'subscribe' then
    local stamp = redis.call('HGET', m, 'sv')
    if (not stamp or stamp < id) and (not durable or id > (redis.call('HGET', m, 'df') or '')) then
      redis.call('HSET', m, 'sv', id)
      subscription = 2
    end
    if shared then
      if durable or redis.call('EXISTS', s) == 1 then
        held = 1
        if subscription == 2 then
          if payload == '1' then redis.call('SADD', s, user) else redis.call('SREM', s, user) end
          expire(s, ttl_s)
        end
      end
      redis.call('INCR', sv)
      expire(sv, ttl_s)
    end
  elseif kind == 'delete' then
    redis.call('DEL', h, d)
    subscription = 2
    if shared then
      redis.call('SREM', s, user)
      redis.call('INCR', sv)
      expire(sv, ttl_s)
    end
    if durable and id > (redis.call('HGET', m, 'df') or '') then
      redis.call('HSET', m, 'df', id, 'sv', id)
      raise_floor(h, m, id)
    end
    -- Erased means erased: pending entries older than the delete go too.
    local kept = {}
    for _, e in ipairs(redis.call('LRANGE', j, 0, -1)) do
      if item_id(e) > id then kept[#kept + 1] = e else dropped = dropped + 1 end
    end
    if dropped > 0 then
      redis.call('DEL', j)
      for x = 1, #kept, 1000 do redis.call('RPUSH', j, unpack(kept, x, math.min(x + 999, #kept))) end
      if shared then count_pending(index, pending, user, -dropped) end
    end
  end
  -- A write that found no copy to change bumps the version, so a fill that read the durable tier
  -- before this write cannot install its copy. One that changed a copy needs no bump: no fill can
  -- succeed while that copy exists, and a fill outlives the copy's TTL by far only in theory.
  if held == 0 and not durable then
    redis.call('HINCRBY', m, 'v', 1)
    expire(m, ttl_m)
  end
  if entry ~= '' then
    redis.call('RPUSH', j, entry == '${FLAG.entryIsPayload}' and payload or entry)
    if shared then count_pending(index, pending, user, 1) end
  end
  return held + subscription + (shared and 0 or 4 * dropped)
end

-- A key names a message: once a clear or delete removed the message, a re-delivery is a new one.
local function forget_keys(ik, id)
  local pairs_ = redis.call('HGETALL', ik)
  for x = 1, #pairs_, 2 do
    if pairs_[x + 1] <= id then redis.call('HDEL', ik, pairs_[x]) end
  end
end

local out = {}
local per = shared and 9 or 5
for i = 0, (#ARGV - 6) / 6 - 1 do
  local a, k = 6 + i * 6, i * per
  local kind, id, user, payload, entry, key = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local h, d, m, j, ik = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local s, sv, index, pending = KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], KEYS[k + 9]
  -- An idempotency key seen before (within a day, the last 1000 per user) means a re-delivery.
  local first = key ~= '' and redis.call('HGET', ik, key) or false
  if first and first ~= id then
    out[i + 1] = first
  else
    if key ~= '' then
      if redis.call('HLEN', ik) >= 1000 then redis.call('DEL', ik) end
      redis.call('HSET', ik, key, id)
      redis.call('PEXPIRE', ik, 86400000)
    end
    if kind == 'delete' or kind == 'clear' then forget_keys(ik, id) end
    out[i + 1] = apply(kind, id, user, payload, entry, h, d, m, j, s, sv, index, pending)
  end
end
return out
`;

/** KEYS: subscribers set, its version. ARGV: role, ttl, user, '1' to add / '0' to remove. The shared-key step of a Cluster write. */
export const APPLY_SUBSCRIPTION = `${HELPERS}
local present = ARGV[1] == '${FLAG.durable}' or redis.call('EXISTS', KEYS[1]) == 1
if present then
  if ARGV[4] == '1' then redis.call('SADD', KEYS[1], ARGV[3]) else redis.call('SREM', KEYS[1], ARGV[3]) end
  expire(KEYS[1], tonumber(ARGV[2]))
end
redis.call('INCR', KEYS[2])
expire(KEYS[2], tonumber(ARGV[2]))
return present and 1 or 0
`;

/**
 * KEYS: pending index, pending counter. ARGV: user, n. On a Cluster: counts n entries for the user
 * before they are journaled in its slot (mark before write), or takes back entries a delete dropped.
 */
export const COUNT_PENDING = `${PENDING}
count_pending(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
return 1
`;

/**
 * The version a miss hands to its fill. A user never written through this Redis has no meta hash:
 * the miss makes one (version 0, expiring like the copies), so that invalidateAll, which moves every
 * version it finds, also fails a fill in flight for such a user.
 */
const MISS_VERSION = `
local function miss_version(m, ttl)
  local v = redis.call('HGET', m, 'v')
  if v then return v end
  redis.call('HSET', m, 'v', '0')
  if ttl > 0 then redis.call('PEXPIRE', m, ttl) end
  return '0'
end
`;

/** KEYS: h, m, j. ARGV: limit, ttl of the meta hash. A hit is the items; a miss is {0, version, journal entries...}. */
export const READ_HISTORY = `${MISS_VERSION}
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #items > 0 then return items end
local out = {0, miss_version(KEYS[2], tonumber(ARGV[2]))}
for _, e in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do out[#out + 1] = e end
return out
`;

/** KEYS: d, m, j. ARGV: ttl of the meta hash. A hit is {1, phone, booking}; a miss is {0, version, journal entries...}. */
export const READ_USER = `${MISS_VERSION}
local v = redis.call('HMGET', KEYS[1], '_', 'p', 'b')
if v[1] then return {1, v[2], v[3]} end
local out = {0, miss_version(KEYS[2], tonumber(ARGV[1]))}
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

const POP = `
local function pop(j, entries, n)
  -- The usual case in one step: the entries are still the journal's head, in order (entries only
  -- ever leave from the head, so matching ends mean matching middles).
  if n > 0 and redis.call('LINDEX', j, 0) == entries[1] and redis.call('LINDEX', j, n - 1) == entries[n] then
    redis.call('LTRIM', j, n, -1)
    return n
  end
  local popped = 0
  for i = 1, n do
    if redis.call('LINDEX', j, 0) == entries[i] then
      redis.call('LPOP', j)
      popped = popped + 1
    end
  end
  return popped
end
`;

const ENTRIES_FROM = (first: number) => `
local entries = {}
for i = ${first}, #ARGV do entries[#entries + 1] = ARGV[i] end
`;

/**
 * One Redis. KEYS: j, pending index, pending counter. ARGV: user, then the entries the durable
 * tier now has. Pops each entry only while it is at the head (an entry another syncer already
 * removed, or one written since, is safe) and sets the user's count to what is left, all at once:
 * no crash or concurrent write can leave an entry that the index does not point to. Returns
 * {popped, left}.
 */
export const ACK = `${PENDING}${POP}${ENTRIES_FROM(2)}
local popped = pop(KEYS[1], entries, #entries)
local left = redis.call('LLEN', KEYS[1])
set_pending(KEYS[2], KEYS[3], ARGV[1], left)
return {popped, left}
`;

/** A Cluster's first ack step, in the user's slot. KEYS: j. ARGV: entries. Returns {popped, left}. */
export const ACK_JOURNAL = `${POP}${ENTRIES_FROM(1)}
local popped = pop(KEYS[1], entries, #entries)
return {popped, redis.call('LLEN', KEYS[1])}
`;

/**
 * A Cluster's second ack step, in the index's slot. KEYS: pending index, pending counter, idle
 * marks. ARGV: user, popped, left (what the first step saw), now (ms), idle limit (ms).
 * Uncounts what was popped, never below what was left: a write marked since the first step keeps
 * the user in the index. A count with nothing journaled behind it is a write between its two
 * steps, or one whose second step never ran (its process died): after the idle limit with the
 * count unchanged, it is the latter and is dropped.
 */
export const ACK_INDEX = `${PENDING}
local index, pending, idle, user = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local popped, left, now, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local was = tonumber(redis.call('HGET', index, user) or '0')
local count = math.max(was - popped, left)
if count > 0 and left == 0 and popped == 0 then
  local seen = redis.call('HGET', idle, user)
  local at, seen_count = string.match(seen or '', '^(%d+):(%d+)$')
  if not at or tonumber(seen_count) ~= count then
    redis.call('HSET', idle, user, ARGV[4] .. ':' .. count)
  elseif now - tonumber(at) > limit then
    count = 0
  end
end
if count == 0 or left > 0 then redis.call('HDEL', idle, user) end
set_pending(index, pending, user, count)
return count
`;

/**
 * The backstop for journals the index does not point to (written by 0.1, which kept a set). KEYS:
 * j, pending index, pending counter (one Redis); ARGV: user. On a Cluster KEYS are the index and
 * counter only and ARGV[2] is the journal's length.
 */
export const INDEX_JOURNAL = `${PENDING}
local cluster = #KEYS == 2
local index, pending = KEYS[cluster and 1 or 2], KEYS[cluster and 2 or 3]
if redis.call('HEXISTS', index, ARGV[1]) == 1 then return 0 end
local left = cluster and tonumber(ARGV[2]) or redis.call('LLEN', KEYS[1])
if left == 0 then return 0 end
set_pending(index, pending, ARGV[1], left)
return left
`;

/** KEYS: lock. ARGV: token, ttl. Takes the lease if it is free or already this holder's (a pass that failed could not release it). */
export const ACQUIRE_LOCK = `
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
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
