/*
 * Lua run atomically by Redis. History items (and appends' journal entries) are compact messages
 * (<head><22-character dense id>..., or <role><26-character id><flags>... for ids the store did
 * not make), or JSON that starts with {"id":"<26-character id>" (items written before the compact
 * form, other ops' journal entries): see src/model/codec.ts. A script reads an id by position,
 * after looking at the first character, and compares ids in their 26-character form.
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
  /** An append that starts a streaming draft. */
  draft: 'draft',
} as const;

/**
 * The form of an item or journal entry: 0 JSON ({"id":"<id>"...), 1 compact with a 26-character
 * id (<role s u a t><id><flags digit>...), 2 dense (<head 0-9A-V: role x 8 + flags><id: 22>...),
 * with its flags; and its id in the 26-character form (Crockford base32) whatever the form.
 */
const ITEM = `
local B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
local function form_of(item)
  local b = string.byte(item, 1)
  if b == 123 then return 0, 0 end
  if b == 115 or b == 117 or b == 97 or b == 116 then return 1, string.byte(item, 28) - 48 end
  return 2, (b >= 65 and b - 55 or b - 48) % 8
end
-- A character of the dense alphabet (-0-9A-Z_a-z, in ASCII order) as its value.
local function d64(b)
  if b >= 97 then return b - 59 elseif b == 95 then return 37 elseif b >= 65 then return b - 54 elseif b >= 48 then return b - 47 end
  return 0
end
local function sparse_id(item)
  local out = {}
  for g = 2, 17, 5 do
    local n = 0
    for i = g, g + 4 do n = n * 64 + d64(string.byte(item, i)) end
    for k = 5, 0, -1 do
      local x = math.floor(n / 32 ^ k) % 32
      out[#out + 1] = string.sub(B32, x + 1, x + 1)
    end
  end
  local n = math.floor((d64(string.byte(item, 22)) * 64 + d64(string.byte(item, 23))) / 4)
  local hi, lo = math.floor(n / 32), n % 32
  out[#out + 1] = string.sub(B32, hi + 1, hi + 1)
  out[#out + 1] = string.sub(B32, lo + 1, lo + 1)
  return table.concat(out)
end
local D64 = '-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz'
-- A 26-character id in the dense form (the inverse of sparse_id), to compare dense items as they are.
local function dense_id(id)
  local out = {}
  local function b32(i) return (string.find(B32, string.sub(id, i, i), 1, true) or 1) - 1 end
  for g = 1, 19, 6 do
    local n = 0
    for i = g, g + 5 do n = n * 32 + b32(i) end
    for k = 4, 0, -1 do
      local x = math.floor(n / 64 ^ k) % 64
      out[#out + 1] = string.sub(D64, x + 1, x + 1)
    end
  end
  local n = (b32(25) * 32 + b32(26)) * 4
  local hi, lo = math.floor(n / 64), n % 64
  out[#out + 1] = string.sub(D64, hi + 1, hi + 1)
  out[#out + 1] = string.sub(D64, lo + 1, lo + 1)
  return table.concat(out)
end
local function item_id(item)
  local form = form_of(item)
  if form == 0 then return string.sub(item, 8, 33) end
  if form == 1 then return string.sub(item, 2, 27) end
  return sparse_id(item)
end
-- Whether an item's id is at least \`id\`, the id of \`other\` (an item): two dense ids compare as
-- they are (the append's hot path turns none back).
-- A test of whether an item's id is in [lo, hi] ('' lo: no lower bound; a lo of id..'!' means
-- above id), with dense items compared in their own form (no id decoded per item).
local function id_range(lo, hi)
  local strict = #lo == 27
  local dlo, dhi = lo ~= '' and dense_id(string.sub(lo, 1, 26)) or '', dense_id(hi)
  return function(item)
    if form_of(item) == 2 then
      local k = string.sub(item, 2, 23)
      return (lo == '' or k > dlo or (k == dlo and not strict)) and k <= dhi
    end
    local x = item_id(item)
    return x >= lo and x <= hi
  end
end
local function id_at_least(item, id, other)
  if form_of(item) == 2 and form_of(other) == 2 then return string.sub(item, 2, 23) >= string.sub(other, 2, 23) end
  return item_id(item) >= id
end
`;

const HELPERS = `
local function expire(key, ttl) if ttl > 0 then redis.call('PEXPIRE', key, ttl) end end
${ITEM}`;

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
  if n > 0 then
    -- The usual case (a journaled write): counts only grow, so one HINCRBY says it all.
    redis.call('HINCRBY', index, user, n)
    redis.call('INCRBY', pending, n)
    return
  end
  set_pending(index, pending, user, tonumber(redis.call('HGET', index, user) or '0') + n)
end
`;

/**
 * The user's other keys, named from the meta hash's (same slot): a script reaches them without
 * the caller listing them, and finds a user's thread lists through the set `l` (threads other than
 * 'main' that may hold a list; 'main' always may). An item's edit stamp follows its id (compact:
 * when flags say so; JSON: as ,"v":"<id>"); items of a list are in id order, so a message is found
 * by bisection. A compact item's createdAt is the time its id encodes unless its tail says
 * otherwise (c), its updatedAt is the tail's last field (u).
 */
const USER = `
local function base_of(m) return string.sub(m, 1, -3) end
local function list_key(base, thread) if thread == 'main' then return base .. ':h' end return base .. ':h:' .. thread end
-- Where a compact item's stamp (or, without one, its tail or content) starts.
local function after_id(form) return form == 1 and 29 or 24 end
local function stamp_of(item)
  local form, flags = form_of(item)
  if form == 0 then
    if string.sub(item, 35, 40) == ',"v":"' then return string.sub(item, 41, 66) end
  elseif flags % 2 == 1 then
    local at = after_id(form)
    return string.sub(item, at, at + 25)
  end
  return ''
end
-- A compact item's tail (JSON text, ending at the first line break), or nil when it has none.
local function tail_of(item)
  local form, flags = form_of(item)
  if math.floor(flags / 2) % 2 == 0 then return nil end
  local start = after_id(form) + (flags % 2 == 1 and 26 or 0)
  return string.sub(item, start, string.find(item, '\\n', start, true) - 1)
end
-- The time an id encodes (ms; Crockford base32, ids.ts), or nil when it encodes none.
local function id_time(id)
  local t = 0
  for i = 1, 10 do
    local d = string.find(B32, string.sub(id, i, i), 1, true)
    if not d then return nil end
    t = t * 32 + d - 1
  end
  return t
end
local function created_of(item)
  if string.byte(item, 1) == 123 then return tonumber(string.match(item, ',"createdAt":(%-?%d+)')) or 0 end
  local tail = tail_of(item)
  local c = tail and string.match(tail, '^{"c":(%-?%d+)')
  if c then return tonumber(c) end
  return id_time(item_id(item)) or 0
end
-- updatedAt as the item writes it (digits), or nil.
local function updated_of(item)
  if string.byte(item, 1) == 123 then return string.match(item, ',"updatedAt":(%d+)}$') end
  local tail = tail_of(item)
  return tail and string.match(tail, '[{,]"u":(%d+)}$')
end
local function lists(base)
  local out = {{'main', base .. ':h'}}
  for _, t in ipairs(redis.call('SMEMBERS', base .. ':l')) do out[#out + 1] = {t, base .. ':h:' .. t} end
  return out
end
local function find(h, id)
  local lo, hi = 0, redis.call('LLEN', h) - 1
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local item = redis.call('LINDEX', h, mid)
    local cur = item_id(item)
    if cur == id then return mid, item end
    if cur < id then lo = mid + 1 else hi = mid - 1 end
  end
  return nil, nil
end
local function activity(item) return math.max(created_of(item), tonumber(updated_of(item) or '0')) end
`;

/**
 * Applies a batch of ops. Per op, KEYS: h (the list of the op's thread; 'main' for ops without
 * one), d, m, j, i (the user's slot: i maps idempotency keys to message ids), then (with
 * FLAG.sharedHere only) subscribers set, its version, pending index, pending counter, drafts index
 * (shared keys). ARGV: role (FLAG.cache or FLAG.durable), history limit, ttl history, ttl user
 * data, ttl subscribers, FLAG.sharedHere to change the shared keys here too (one Redis) or
 * FLAG.sharedByCaller to leave them to the caller (a Cluster, where they live in other slots), and
 * now (ms, a draft's flush time); then per op: kind, id, user, payload, journal entry ('' if not
 * pending, FLAG.entryIsPayload for the payload), idempotency key ('' for none), thread, and
 * FLAG.draft for an append that starts a draft ('' otherwise).
 * Payloads: append: the item; phone, booking, subscribe: the value; title: the title as JSON;
 * cut: from and to; edit: target, content (JSON), then the item's meta, status, updatedAt and tokens
 * fields as encoded ('' when absent), one per line (JSON text never holds a raw line break).
 * Returns per op: the id of the earlier message if the op repeats its idempotency key; else +1
 * if it landed in a copy Redis holds (0: no copy to change, or one it deleted; a cache then drops
 * copies again once the durable write is in, so a fill that read the durable tier before that
 * write cannot linger), +2 if it changes the subscription (for the caller's shared-key step),
 * +4 if the op recorded a draft's progress or +8 if it ended one (for the drafts index step),
 * plus 16 x the journal entries a delete dropped (with FLAG.sharedByCaller: the caller takes them
 * off the pending index).
 */
/** What only the full write script needs (every kind but append, phone, booking and subscribe; the durable role). */
const V2_HELPERS = `
local function keep_only(h, keep)
  local ttl = redis.call('PTTL', h)
  redis.call('DEL', h)
  for i = 1, #keep, 1000 do redis.call('RPUSH', h, unpack(keep, i, math.min(i + 999, #keep))) end
  if ttl > 0 and #keep > 0 then redis.call('PEXPIRE', h, ttl) end
end

-- Removes the items the test doomed (see id_range) picks; returns their ids and the
-- latest activity of those kept. A compact item without a tail is as active as its id's time,
-- which grows along the list: only the last such item kept is asked.
-- A few go one LREM each (an item holds its id, so it is unique); more, and the list is rewritten.
local function remove_where(h, doomed)
  local keep, gone, items, act, plain = {}, {}, {}, 0, nil
  for _, item in ipairs(redis.call('LRANGE', h, 0, -1)) do
    if doomed(item) then
      gone[#gone + 1] = item_id(item)
      items[#items + 1] = item
    else
      keep[#keep + 1] = item
      if durable then
        local form, flags = form_of(item)
        if form ~= 0 and math.floor(flags / 2) % 2 == 0 then plain = item else act = math.max(act, activity(item)) end
      end
    end
  end
  if plain then act = math.max(act, activity(plain)) end
  if #gone > 8 then keep_only(h, keep)
  else for _, item in ipairs(items) do redis.call('LREM', h, 1, item) end end
  return gone, act
end

-- The durable role's thread info (hash t): u:<thread> latest message activity, n:<thread> title
-- (JSON, absent for none), s:<thread> the title's stamp.
local function set_activity(base, thread, act)
  redis.call('HSET', base .. ':t', 'u:' .. thread, string.format('%d', act))
end
local function raise_activity(base, thread, act)
  if act > tonumber(redis.call('HGET', base .. ':t', 'u:' .. thread) or '0') then set_activity(base, thread, act) end
end
local function set_title(base, m, thread, id, title)
  local t = base .. ':t'
  if id <= (redis.call('HGET', t, 's:' .. thread) or '') or id <= (redis.call('HGET', m, 'df') or '') then return end
  if title == 'null' then redis.call('HDEL', t, 'n:' .. thread) else redis.call('HSET', t, 'n:' .. thread, title) end
  redis.call('HSET', t, 's:' .. thread, id)
  if thread ~= 'main' then redis.call('SADD', base .. ':l', thread) end
end

local function floor_field(thread) if thread == 'main' then return 'f' end return 'f:' .. thread end

-- Whether a message of the thread with this id was removed for good (durable role).
local function removed(base, m, thread, id)
  local floors = redis.call('HMGET', m, 'df', floor_field(thread))
  if id <= (floors[1] or '') or id <= (floors[2] or '') then return true end
  local text = redis.call('HGET', base .. ':c', thread)
  if text then
    for from, to in string.gmatch(text, '(%S+) (%S+)') do
      if from <= id and id <= to then return true end
    end
  end
  return false
end

-- A key names a message: once a clear, cut or delete removed the message, a re-delivery is a new one.
local function forget_range(ik, from, to)
  local pairs_ = redis.call('HGETALL', ik)
  for x = 1, #pairs_, 2 do
    local named = pairs_[x + 1]
    if from <= named and named <= to then redis.call('HDEL', ik, pairs_[x]) end
  end
end
local function forget_ids(ik, gone)
  if #gone == 0 then return end
  local set = {}
  for _, id in ipairs(gone) do set[id] = true end
  local pairs_ = redis.call('HGETALL', ik)
  for x = 1, #pairs_, 2 do
    if set[pairs_[x + 1]] then redis.call('HDEL', ik, pairs_[x]) end
  end
end

-- An edit's payload: target, meta (JSON), status, updatedAt, token count, '1' when that count is
-- the default formula's ('' for each field absent), then the content as it is (any text).
local function edit_parts(payload)
  local p, at = {}, 1
  for i = 1, 6 do
    local nl = string.find(payload, '\\n', at, true)
    p[i] = string.sub(payload, at, nl - 1)
    at = nl + 1
  end
  p[7] = string.sub(payload, at)
  return p
end

-- An edited item, written from the old one in the old one's form: id, role, createdAt, thread and
-- key kept, the rest the edit's (the token count too: the edit's, or none, when the default formula
-- counts the new content on read), updatedAt the edit's or else the old one's.
local function edited(old, id, p)
  local updated = p[4]
  if updated == '' then updated = updated_of(old) or '' end
  if string.byte(old, 1) == 123 then
    local role = string.match(old, '"role":"(%a+)"')
    local created = string.match(old, ',"createdAt":(%-?%d+)')
    local thread = string.match(old, ',"createdAt":%-?%d+(,"thread":"[%w_%-]+")') or ''
    local key = ''
    if string.find(old, '"key":', 1, true) then
      local k = cjson.decode(old).key
      if type(k) == 'string' then key = ',"key":' .. cjson.encode(k) end
    end
    local meta = p[2] ~= '' and (',"meta":' .. p[2]) or ''
    local status = p[3] ~= '' and (',"status":"' .. p[3] .. '"') or ''
    local tokens = p[5] ~= '' and (',"tokens":' .. p[5]) or ''
    if updated ~= '' then updated = ',"updatedAt":' .. updated end
    return '{"id":"' .. p[1] .. '","v":"' .. id .. '","role":"' .. role .. '","content":' .. cjson.encode(p[7]) .. ',"createdAt":' .. created .. thread .. meta .. key .. status .. tokens .. updated .. '}'
  end
  local tail, fields = tail_of(old), {}
  if tail then
    local c = string.match(tail, '^{"c":(%-?%d+)')
    if c then fields[#fields + 1] = '"c":' .. c end
    local h = string.match(tail, '^{"h":"([%w_%-]+)"') or string.match(tail, '^{"c":%-?%d+,"h":"([%w_%-]+)"')
    if h then fields[#fields + 1] = '"h":"' .. h .. '"' end
    if string.find(tail, '"k":', 1, true) then
      local k = cjson.decode(tail).k
      if type(k) == 'string' then fields[#fields + 1] = '"k":' .. cjson.encode(k) end
    end
  end
  if p[2] ~= '' then fields[#fields + 1] = '"m":' .. p[2] end
  if p[3] ~= '' then fields[#fields + 1] = '"s":"' .. p[3] .. '"' end
  if p[5] ~= '' and p[6] ~= '1' then fields[#fields + 1] = '"t":' .. p[5] end
  if updated ~= '' then fields[#fields + 1] = '"u":' .. updated end
  local flags = 1 + (#fields > 0 and 2 or 0) + (p[6] == '1' and 4 or 0)
  local form = form_of(old)
  local head
  if form == 1 then head = string.sub(old, 1, 1) .. p[1] .. flags .. id
  else
    local b = string.byte(old, 1)
    local h = math.floor((b >= 65 and b - 55 or b - 48) / 8) * 8 + flags
    head = string.sub('0123456789ABCDEFGHIJKLMNOPQRSTUV', h + 1, h + 1) .. string.sub(old, 2, 23) .. id
  end
  if #fields == 0 then return head .. p[7] end
  return head .. '{' .. table.concat(fields, ',') .. '}\\n' .. p[7]
end

-- The durable role's summaries (hash y): thread -> "<op id>\\n<covers>\\n<dirty>\\n<text>".
local function mark_summary(base, thread, id, lowest)
  local y = base .. ':y'
  local rec = redis.call('HGET', y, thread)
  if not rec then return end
  local sid, covers, dirty, text = string.match(rec, '^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$')
  if id > sid and lowest <= covers and id > dirty then redis.call('HSET', y, thread, sid .. '\\n' .. covers .. '\\n' .. id .. '\\n' .. text) end
end
local function erase_summary(base, thread, id)
  local y = base .. ':y'
  local rec = redis.call('HGET', y, thread)
  if rec and string.match(rec, '^[^\\n]*') <= id then redis.call('HDEL', y, thread) end
end

-- A draft's record: "<flush time>|<item>" under its id in hash r.
local function draft_item(record) return record and string.match(record, '^%d+|(.*)$') end
`;

const DURABLE_APPEND = `
      local base = base_of(m)
      if not removed(base, m, thread, id) then
        fresh = insert_ordered(h, id, payload)
        if thread ~= 'main' then redis.call('SADD', base .. ':l', thread) end
        raise_activity(base, thread, activity(payload))
      end
`;

const V2_BRANCHES = `
  elseif kind == 'edit' then
    local base = base_of(m)
    local p = edit_parts(payload)
    local target = p[1]
    local at, old = find(h, target)
    if not at and durable then
      -- The op names the thread the message was written to; look in the others all the same.
      for _, list in ipairs(lists(base)) do
        if list[2] ~= h then
          at, old = find(list[2], target)
          if at then h, thread = list[2], list[1] break end
        end
      end
    end
    if durable then mark_summary(base, thread, id, target) end
    local new
    if at and stamp_of(old) < id then
      new = edited(old, id, p)
      redis.call('LSET', h, at, new)
      if durable and p[4] ~= '' then raise_activity(base, thread, tonumber(p[4])) end
    end
    if not durable then held = redis.call('EXISTS', h) end
    local r = base .. ':r'
    local record = draft_item(redis.call('HGET', r, target))
    if p[3] == 'streaming' then
      -- A draft's progress: recorded even with no copy held, from the last record.
      if not new and not at and not durable and record and stamp_of(record) < id then new = edited(record, id, p) end
      if new then
        redis.call('HSET', r, target, now .. '|' .. new)
        draft = 1
      end
    elseif record and stamp_of(record) < id then
      redis.call('HDEL', r, target)
      draft = 2
    end
  elseif kind == 'cut' then
    local from, to = string.match(payload, '^([^\\n]*)\\n(.*)$')
    local doomed = id_range(from, to)
    if durable then
      local base, pair = base_of(m), from .. ' ' .. to
      local c = base .. ':c'
      local text = redis.call('HGET', c, thread)
      if not text then redis.call('HSET', c, thread, pair)
      elseif not string.find('\\n' .. text .. '\\n', '\\n' .. pair .. '\\n', 1, true) then redis.call('HSET', c, thread, text .. '\\n' .. pair) end
      mark_summary(base, thread, id, from)
      local gone, act = remove_where(h, doomed)
      if #gone > 0 then
        set_activity(base, thread, act)
        forget_ids(ik, gone)
      end
    else
      held = redis.call('EXISTS', h)
      if held == 1 then remove_where(h, doomed) end
      forget_range(ik, from, to)
    end
  elseif kind == 'clear' or kind == 'dropThread' then
    if durable then
      local base, field = base_of(m), floor_field(thread)
      if kind == 'dropThread' then set_title(base, m, thread, id, 'null') end
      erase_summary(base, thread, id)
      if id > (redis.call('HGET', m, field) or '') then
        redis.call('HSET', m, field, id)
        local c = base .. ':c'
        local text = redis.call('HGET', c, thread)
        if text then
          local kept = {}
          for from, to in string.gmatch(text, '(%S+) (%S+)') do
            if to > id then kept[#kept + 1] = from .. ' ' .. to end
          end
          if #kept > 0 then redis.call('HSET', c, thread, table.concat(kept, '\\n')) else redis.call('HDEL', c, thread) end
        end
        local gone, act = remove_where(h, id_range('', id))
        if #gone > 0 then
          set_activity(base, thread, act)
          forget_ids(ik, gone)
        end
      end
    else
      redis.call('DEL', h)
      forget_range(ik, '', id)
    end
  elseif kind == 'title' then
    -- A cache holds no titles (they are read from the durable tier): the version just moves.
    if durable then set_title(base_of(m), m, thread, id, payload) end
  elseif kind == 'summary' then
    -- A cache holds no summaries (they are read from the durable tier): the op is only journaled.
    if durable then
      local base = base_of(m)
      local floors = redis.call('HMGET', m, 'df', floor_field(thread))
      if id > (floors[1] or '') and id > (floors[2] or '') then
        local y = base .. ':y'
        local old = redis.call('HGET', y, thread)
        local old_id, old_dirty = '', ''
        if old then old_id, old_dirty = string.match(old, '^([^\\n]*)\\n[^\\n]*\\n([^\\n]*)\\n') end
        if id > old_id then
          local covers = string.match(payload, '^[^\\n]*')
          local dirty = ''
          if old_dirty > id then dirty = old_dirty end
          redis.call('HSET', y, thread, id .. '\\n' .. covers .. '\\n' .. dirty .. '\\n' .. string.sub(payload, #covers + 2))
        end
      end
    end
`;

const DELETE_BRANCH = `
  elseif kind == 'delete' then
    local base = base_of(m)
    local all = lists(base)
    redis.call('DEL', d)
    subscription = 2
    if shared then
      redis.call('SREM', s, user)
      redis.call('INCR', sv)
      expire(sv, ttl_s)
    end
    -- Drafts go with the user (on a Cluster the drafts index forgets them when asked for them).
    local r = base .. ':r'
    if shared then
      for _, draft_id in ipairs(redis.call('HKEYS', r)) do redis.call('ZREM', z, draft_id .. user) end
    end
    redis.call('DEL', r)
    if not durable then
      for _, list in ipairs(all) do redis.call('DEL', list[2]) end
      redis.call('DEL', base .. ':l')
    elseif id > (redis.call('HGET', m, 'df') or '') then
      for _, field in ipairs(redis.call('HKEYS', base .. ':t')) do
        if string.sub(field, 1, 2) == 's:' then set_title(base, m, string.sub(field, 3), id, 'null') end
      end
      redis.call('HSET', m, 'df', id, 'sv', id)
      local y = base .. ':y'
      for _, field in ipairs(redis.call('HKEYS', y)) do erase_summary(base, field, id) end
      for _, list in ipairs(all) do
        local gone, act = remove_where(list[2], id_range('', id))
        if #gone > 0 then set_activity(base, list[1], act) end
      end
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
`;

/** The cache role's hot path needs only the base name of the user's keys. */
const LEAN_USER = `
local function base_of(m) return string.sub(m, 1, -3) end
`;

const writeScript = (full: boolean): string => `${HELPERS}${PENDING}${full ? USER : LEAN_USER}
local durable = ARGV[1] == '${FLAG.durable}'
local limit, ttl_h, ttl_u, ttl_s = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local shared = ARGV[6] == '${FLAG.sharedHere}'
local now = ARGV[7]
local ttl_m = math.max(ttl_h, ttl_u)

-- Returns whether it inserted (false: the id was there).
local function insert_ordered(h, id, item)
  local last = redis.call('LINDEX', h, -1)
  if not last or not id_at_least(last, id, item) then redis.call('RPUSH', h, item) return true end
  local n = redis.call('LLEN', h)
  for i = -1, -n, -1 do
    local cur = redis.call('LINDEX', h, i)
    local cur_id = item_id(cur)
    if cur_id == id then return false end
    if cur_id < id then redis.call('LINSERT', h, 'AFTER', cur, item) return true end
  end
  redis.call('LPUSH', h, item)
  return true
end

local function set_field(d, m, field, id, value)
  local stamp = redis.call('HGET', d, field .. 'v')
  if stamp and stamp >= id then return end
  if durable and id <= (redis.call('HGET', m, 'df') or '') then return end
  if value == '' then redis.call('HDEL', d, field) else redis.call('HSET', d, field, value) end
  redis.call('HSET', d, field .. 'v', id, '_', '1')
end

-- Replaces a list's items, keeping its time to live.
${full ? V2_HELPERS : ''}

local function apply(kind, id, user, payload, entry, h, d, m, j, ik, thread, extra, s, sv, index, pending, z)
  local held, subscription, draft, dropped = durable and 1 or 0, 0, 0, 0
  if kind == 'append' then
    local fresh
    if durable then
${full ? DURABLE_APPEND : "      error('the lean write script is for the cache role')"}
    else
      -- The hot path: append to a copy that exists; only an out-of-order id or a repeat is redone.
      local n = redis.call('RPUSHX', h, payload)
      fresh = true
      if n > 0 then
        held = 1
        if n > 1 and id_at_least(redis.call('LINDEX', h, -2), id, payload) then
          redis.call('RPOP', h)
          fresh = insert_ordered(h, id, payload)
        end
        if n > limit then redis.call('LTRIM', h, -limit, -1) end
        expire(h, ttl_h)
        if thread ~= 'main' then expire(base_of(m) .. ':l', ttl_h) end
      end
    end
    if fresh and extra == '${FLAG.draft}' then
      local r = base_of(m) .. ':r'
      if redis.call('HEXISTS', r, id) == 0 then
        redis.call('HSET', r, id, now .. '|' .. payload)
        draft = 1
      end
    end
${full ? V2_BRANCHES : ''}
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
${full ? DELETE_BRANCH : ''}
  end
  if shared and draft > 0 then
    local member = (kind == 'append' and id or string.match(payload, '^[^\\n]*')) .. user
    if draft == 1 then redis.call('ZADD', z, now, member) else redis.call('ZREM', z, member) end
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
  return held + subscription + 4 * draft + (shared and 0 or 16 * dropped)
end

local out = {}
local per = shared and 10 or 5
for i = 0, (#ARGV - 7) / 8 - 1 do
  local a, k = 7 + i * 8, i * per
  local kind, id, user, payload, entry, key = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local thread, extra = ARGV[a + 7], ARGV[a + 8]
  local h, d, m, j, ik = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local s, sv, index, pending, z = KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], KEYS[k + 9], KEYS[k + 10]
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
${full ? "    if kind == 'delete' then forget_range(ik, '', id) end" : ''}
    out[i + 1] = apply(kind, id, user, payload, entry, h, d, m, j, ik, thread, extra, s, sv, index, pending, z)
  end
end
return out
`;

/** Every kind, both roles. */
export const WRITE = writeScript(true);

/**
 * The same for a cache-role batch of appends, phone, booking and subscription only (the hot path):
 * without the helpers the other kinds need, whose closures every call would otherwise build.
 */
export const WRITE_LEAN = writeScript(false);

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

/**
 * KEYS: h (the thread's list), m, l (the user's set of threads). ARGV: version, ttl, thread,
 * items... Installs a copy only if nothing was written since the miss; a thread other than 'main'
 * is named in l, which lives at least as long as each of the lists it names.
 */
export const FILL_HISTORY = `
if (redis.call('HGET', KEYS[2], 'v') or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 4, #ARGV, 1000 do redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV))) end
local ttl = tonumber(ARGV[2])
if #ARGV > 3 and ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[3] ~= 'main' then
  redis.call('SADD', KEYS[3], ARGV[3])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
return 1
`;

/** KEYS: m. ARGV: id. The message with that id in any list of the user: {thread, item}, or {} when none holds it. */
export const READ_MESSAGE = `${ITEM}${USER}
local base = base_of(KEYS[1])
for _, list in ipairs(lists(base)) do
  local at, item = find(list[2], ARGV[1])
  if at then return {list[1], item} end
end
return {}
`;

/** KEYS: m, d. ARGV: ttl of the meta hash. Drops every list of the user and its data copy, and moves the version. */
export const INVALIDATE = `${ITEM}${USER}
local base = base_of(KEYS[1])
for _, list in ipairs(lists(base)) do redis.call('DEL', list[2]) end
redis.call('DEL', base .. ':l', KEYS[2])
redis.call('HINCRBY', KEYS[1], 'v', 1)
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;

/**
 * The durable role's threads. KEYS: m. Per thread that has a list or had a title: thread, message
 * count, oldest message's createdAt ('' for none), newest message id ('' for none), latest
 * message activity (ms), title as JSON ('' for none), title stamp ('' for none).
 */
export const LIST_THREADS = `${ITEM}${USER}
local base = base_of(KEYS[1])
local t = base .. ':t'
local out = {}
for _, list in ipairs(lists(base)) do
  local thread, h = list[1], list[2]
  local n = redis.call('LLEN', h)
  local info = redis.call('HMGET', t, 'u:' .. thread, 'n:' .. thread, 's:' .. thread)
  if n > 0 or info[2] then
    local created, last = '', ''
    if n > 0 then
      created = string.format('%d', created_of(redis.call('LINDEX', h, 0)))
      last = item_id(redis.call('LINDEX', h, -1))
    end
    for _, value in ipairs({thread, n, created, last, info[1] or '0', info[2] or '', info[3] or ''}) do out[#out + 1] = value end
  end
end
return out
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
-- The usual case in one step: n entries from first to last are still the journal's head, in order
-- (entries only ever leave from the head, so matching ends mean matching middles). Returns n, or
-- nil (and pops nothing) when they are not.
local function pop_head(j, n, first, last)
  if n == 0 then return 0 end
  if redis.call('LINDEX', j, 0) ~= first or redis.call('LINDEX', j, n - 1) ~= last then return nil end
  redis.call('LTRIM', j, n, -1)
  return n
end
local function pop(j, entries, n)
  local head = pop_head(j, n, entries[1], entries[n])
  if head then return head end
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

/**
 * ARGV from \`first\` on: 'ends', then the count of the entries the durable tier now has, the
 * first and the last (the usual case: they are the journal's head, and sending them all back
 * would cost a copy of the journal); or 'all', then every entry. Ends that are not the journal's
 * head pop nothing and answer nil: the caller sends every entry then.
 */
const ENTRIES_FROM = (first: number) => `
local entries, n = {}, 0
if ARGV[${first}] == 'ends' then
  n = tonumber(ARGV[${first + 1}])
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[${first + 2}] or redis.call('LINDEX', KEYS[1], n - 1) ~= ARGV[${first + 3}] then return nil end
  entries[1], entries[n] = ARGV[${first + 2}], ARGV[${first + 3}]
else
  for i = ${first + 1}, #ARGV do entries[#entries + 1] = ARGV[i] end
  n = #entries
end
`;

/**
 * One Redis. KEYS: j, pending index, pending counter. ARGV: user, then the entries the durable
 * tier now has (see ENTRIES_FROM). Pops each entry only while it is at the head (an entry another
 * syncer already removed, or one written since, is safe) and sets the user's count to what is
 * left, all at once: no crash or concurrent write can leave an entry that the index does not
 * point to. Returns {popped, left}, or nil (ends that are not the head).
 */
export const ACK = `${PENDING}${POP}${ENTRIES_FROM(2)}
local popped = pop(KEYS[1], entries, n)
local left = redis.call('LLEN', KEYS[1])
set_pending(KEYS[2], KEYS[3], ARGV[1], left)
return {popped, left}
`;

/**
 * ACK of several users at once (one Redis). KEYS: pending index, pending counter (of the users'
 * shard), then each user's journal. ARGV: per user, its name, the count of its entries the durable
 * tier now has, the first and the last ('' when none). Returns per user what is left, or -1 when
 * the entries were not the journal's head (nothing popped: the caller acks that user with ACK).
 */
export const ACK_MANY = `${PENDING}${POP}
local out = {}
for i = 3, #KEYS do
  local a = (i - 3) * 4
  local user, n = ARGV[a + 1], tonumber(ARGV[a + 2])
  if pop_head(KEYS[i], n, ARGV[a + 3], ARGV[a + 4]) then
    local left = redis.call('LLEN', KEYS[i])
    set_pending(KEYS[1], KEYS[2], user, left)
    out[#out + 1] = left
  else
    out[#out + 1] = -1
  end
end
return out
`;

/** A Cluster's first ack step, in the user's slot. KEYS: j. ARGV: the entries (see ENTRIES_FROM). Returns {popped, left}, or nil. */
export const ACK_JOURNAL = `${POP}${ENTRIES_FROM(1)}
local popped = pop(KEYS[1], entries, n)
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

/**
 * KEYS: h (the thread's list), m. ARGV: limit, thread. The durable role's read: {floor (the
 * thread's or the user's, the higher), cut ranges ("from to" lines), items...}.
 */
export const READ_HISTORY_DURABLE = `
local m, thread = KEYS[2], ARGV[2]
local floors = redis.call('HMGET', m, 'df', thread == 'main' and 'f' or ('f:' .. thread))
local floor = floors[1] or ''
if (floors[2] or '') > floor then floor = floors[2] end
local out = {floor, redis.call('HGET', string.sub(m, 1, -3) .. ':c', thread) or ''}
if tonumber(ARGV[1]) <= 0 then return out end
for _, item in ipairs(redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)) do out[#out + 1] = item end
return out
`;
