"""The layout of a task store in Redis (version 1) and the Lua scripts that
change it. Pure: text and key names, no I/O.

Every key of one store starts with ``{namespace}:`` - a Redis Cluster hash
tag, so one store lives on one node and every script touches one slot:

- ``{ns}:schema``: the version that wrote the store (a store never upgrades
  or downgrades one silently), and ``{ns}:lock``: the owner's lease (below).
- ``{ns}:t:<task id>``: a hash per task, the fields of a SQLite store's
  ``tasks`` row (``model``, ``created_at``, ``first_seen_at``, ``terminal``,
  ``terminal_at``, ``delivered_at``, ``deliveries``, ``acked_at``,
  ``updated_at``, ``ref``); absent fields are NULL.
- ``{ns}:i:<ref>``: a hash per create intent (``kind``, ``request``,
  ``created_at``, ``model``, ``task_id``).
- Sorted sets, scored by creation time, answering a restart's questions in
  order (ties by id, as SQLite's ``ORDER BY created_at, task_id``):
  ``{ns}:all``, ``{ns}:unfinished``, ``{ns}:undelivered``, ``{ns}:acked``
  (task ids), ``{ns}:intents`` and ``{ns}:uncertain`` (refs).

Each write is one script, so each is atomic, and each first checks that the
caller still holds the lease: a process that lost it (paused past its lease,
while another took the store over) can no longer write. Times travel as the
exact text Python's ``repr`` gives a float, and the scripts choose between
texts rather than compute (Lua would print a number with 14 digits).
"""

from __future__ import annotations

__all__ = [
    "ACK",
    "ATTACH",
    "DISCARD",
    "FORGET",
    "INTENT",
    "LOCK_LOST",
    "PURGE",
    "RELEASE",
    "RENEW",
    "SCHEMA_VERSION",
    "TASK_FIELDS",
    "TRACK",
    "WRITE_BEHIND",
    "key_prefix",
]

#: The layout version this code reads and writes.
SCHEMA_VERSION = 1

#: What the scripts answer when the caller's lease is gone.
LOCK_LOST = "VEOLOCK the lease of this store was lost to another owner"

#: A task hash's fields, in the order of a SQLite row (after ``task_id``).
TASK_FIELDS = (
    "model",
    "created_at",
    "first_seen_at",
    "terminal",
    "terminal_at",
    "delivered_at",
    "deliveries",
    "acked_at",
    "updated_at",
    "ref",
)


def key_prefix(namespace: str) -> str:
    """The prefix of every key of the store *namespace* (a hash tag)."""
    return "{" + namespace + "}:"


# Every write script: KEYS[1] the lease, ARGV[1] the owner's token, ARGV[2]
# the key prefix; its own arguments from ARGV[3].
_GUARD = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('{LOCK_LOST}')
end
local p = ARGV[2]
local function later(a, b)
  if a == false or a == nil then return b end
  if tonumber(b) > tonumber(a) then return b end
  return a
end
local function rescore(tid, score)
  for _, z in ipairs({{'all', 'unfinished', 'undelivered', 'acked'}}) do
    if redis.call('ZSCORE', p .. z, tid) then redis.call('ZADD', p .. z, score, tid) end
  end
end
"""

#: ARGV[3..7]: ref, kind, request JSON, created_at, model ("" for none).
#: Returns 1, or 0 when the ref is recorded already.
INTENT = (
    _GUARD
    + """
local key = p .. 'i:' .. ARGV[3]
if redis.call('EXISTS', key) == 1 then return 0 end
redis.call('HSET', key, 'kind', ARGV[4], 'request', ARGV[5], 'created_at', ARGV[6])
if ARGV[7] ~= '' then redis.call('HSET', key, 'model', ARGV[7]) end
redis.call('ZADD', p .. 'intents', ARGV[6], ARGV[3])
redis.call('ZADD', p .. 'uncertain', ARGV[6], ARGV[3])
return 1
"""
)

#: ARGV[3..6]: ref, task id, model ("" for none), at. Returns 1; -1 when the
#: ref is unknown; -2 when the intent has another task id. The task keeps what
#: a poll or a user wrote about it (its model and ref unless absent, the
#: earlier creation time).
ATTACH = (
    _GUARD
    + """
local ref, tid, model, at = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ikey = p .. 'i:' .. ref
if redis.call('EXISTS', ikey) == 0 then return -1 end
local have = redis.call('HGET', ikey, 'task_id')
if have and have ~= tid then return -2 end
local created = redis.call('HGET', ikey, 'created_at')
if model == '' then model = redis.call('HGET', ikey, 'model') or '' end
redis.call('HSET', ikey, 'task_id', tid)
redis.call('ZREM', p .. 'uncertain', ref)
local tkey = p .. 't:' .. tid
local updated = later(created, at)
if redis.call('EXISTS', tkey) == 0 then
  redis.call('HSET', tkey, 'created_at', created, 'updated_at', updated,
             'deliveries', '0', 'ref', ref)
  if model ~= '' then redis.call('HSET', tkey, 'model', model) end
  redis.call('ZADD', p .. 'all', created, tid)
  redis.call('ZADD', p .. 'unfinished', created, tid)
  return 1
end
redis.call('HSETNX', tkey, 'ref', ref)
if model ~= '' then redis.call('HSETNX', tkey, 'model', model) end
local old = redis.call('HGET', tkey, 'created_at')
if tonumber(created) < tonumber(old) then
  redis.call('HSET', tkey, 'created_at', created)
  rescore(tid, created)
end
redis.call('HSET', tkey, 'updated_at', later(redis.call('HGET', tkey, 'updated_at'), updated))
return 1
"""
)

#: ARGV[3]: ref. Returns 1 when an intent without a task id was deleted.
DISCARD = (
    _GUARD
    + """
local ikey = p .. 'i:' .. ARGV[3]
if redis.call('EXISTS', ikey) == 0 or redis.call('HEXISTS', ikey, 'task_id') == 1 then
  return 0
end
redis.call('DEL', ikey)
redis.call('ZREM', p .. 'intents', ARGV[3])
redis.call('ZREM', p .. 'uncertain', ARGV[3])
return 1
"""
)

#: ARGV[3], ARGV[4]: model ("" for none), created_at; ARGV[5..]: task ids.
#: Existing tasks keep their data (a missing model is filled in).
TRACK = (
    _GUARD
    + """
local model, when = ARGV[3], ARGV[4]
for i = 5, #ARGV do
  local tid = ARGV[i]
  local tkey = p .. 't:' .. tid
  if redis.call('EXISTS', tkey) == 0 then
    redis.call('HSET', tkey, 'created_at', when, 'updated_at', when, 'deliveries', '0')
    if model ~= '' then redis.call('HSET', tkey, 'model', model) end
    redis.call('ZADD', p .. 'all', when, tid)
    redis.call('ZADD', p .. 'unfinished', when, tid)
  elseif model ~= '' then
    redis.call('HSETNX', tkey, 'model', model)
  end
end
return 1
"""
)

#: ARGV[3..]: pairs of task id and time. A finished task not acknowledged yet
#: is acknowledged; any other changes nothing.
ACK = (
    _GUARD
    + """
for i = 3, #ARGV, 2 do
  local tid, at = ARGV[i], ARGV[i + 1]
  local tkey = p .. 't:' .. tid
  if redis.call('HEXISTS', tkey, 'terminal') == 1
     and redis.call('HEXISTS', tkey, 'acked_at') == 0 then
    redis.call('HSET', tkey, 'acked_at', at,
               'updated_at', later(redis.call('HGET', tkey, 'updated_at'), at))
    redis.call('ZREM', p .. 'undelivered', tid)
    redis.call('ZADD', p .. 'acked', redis.call('HGET', tkey, 'created_at'), tid)
  end
end
return 1
"""
)

#: ARGV[3]: task id. Returns 1 when the task was deleted.
FORGET = (
    _GUARD
    + """
local tid = ARGV[3]
local gone = redis.call('DEL', p .. 't:' .. tid)
for _, z in ipairs({'all', 'unfinished', 'undelivered', 'acked'}) do
  redis.call('ZREM', p .. z, tid)
end
return gone
"""
)

#: ARGV[3], ARGV[4]: cutoff, most rows a call. Deletes tasks and intents
#: created before the cutoff; returns {tasks deleted, intents deleted} (call
#: again while either is the most: a call holds Redis for its rows only).
PURGE = (
    _GUARD
    + """
local cutoff, most = '(' .. ARGV[3], tonumber(ARGV[4])
local tids = redis.call('ZRANGEBYSCORE', p .. 'all', '-inf', cutoff, 'LIMIT', 0, most)
for _, tid in ipairs(tids) do
  redis.call('DEL', p .. 't:' .. tid)
  for _, z in ipairs({'all', 'unfinished', 'undelivered', 'acked'}) do
    redis.call('ZREM', p .. z, tid)
  end
end
local refs = redis.call('ZRANGEBYSCORE', p .. 'intents', '-inf', cutoff, 'LIMIT', 0, most)
for _, ref in ipairs(refs) do
  redis.call('DEL', p .. 'i:' .. ref)
  redis.call('ZREM', p .. 'intents', ref)
  redis.call('ZREM', p .. 'uncertain', ref)
end
return {#tids, #refs}
"""
)

#: ARGV[3..]: groups of six per task: id, seen at, terminal record JSON,
#: terminal at, delivered at, deliveries ("" where none). A terminal record
#: carries the first sighting (``seen``, else its own time); a sighting alone
#: makes the task known; deliveries count only for a task the store knows.
WRITE_BEHIND = (
    _GUARD
    + """
for i = 3, #ARGV, 6 do
  local tid, seen, term, term_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local dlv_at, dlv = ARGV[i + 4], ARGV[i + 5]
  local tkey = p .. 't:' .. tid
  local known = redis.call('EXISTS', tkey) == 1
  if term ~= '' then
    if seen == '' then seen = term_at end
    local created = seen
    if known then
      created = redis.call('HGET', tkey, 'created_at')
      redis.call('HSETNX', tkey, 'first_seen_at', seen)
      redis.call('HSETNX', tkey, 'terminal_at', term_at)
      redis.call('HSET', tkey, 'terminal', term, 'updated_at',
                 later(later(redis.call('HGET', tkey, 'updated_at'), term_at), seen))
    else
      redis.call('HSET', tkey, 'created_at', seen, 'first_seen_at', seen, 'terminal', term,
                 'terminal_at', term_at, 'deliveries', '0', 'updated_at', later(term_at, seen))
      redis.call('ZADD', p .. 'all', seen, tid)
    end
    redis.call('ZREM', p .. 'unfinished', tid)
    if redis.call('HEXISTS', tkey, 'acked_at') == 0 then
      redis.call('ZADD', p .. 'undelivered', created, tid)
    end
    known = true
  elseif seen ~= '' then
    if known then
      redis.call('HSETNX', tkey, 'first_seen_at', seen)
      redis.call('HSET', tkey, 'updated_at', later(redis.call('HGET', tkey, 'updated_at'), seen))
    else
      redis.call('HSET', tkey, 'created_at', seen, 'first_seen_at', seen,
                 'updated_at', seen, 'deliveries', '0')
      redis.call('ZADD', p .. 'all', seen, tid)
      redis.call('ZADD', p .. 'unfinished', seen, tid)
      known = true
    end
  end
  if dlv ~= '' and known then
    redis.call('HINCRBY', tkey, 'deliveries', dlv)
    redis.call('HSET', tkey, 'delivered_at', dlv_at,
               'updated_at', later(redis.call('HGET', tkey, 'updated_at'), dlv_at))
  end
end
return 1
"""
)

#: The lease: KEYS[1] the lock, ARGV[1] the token, ARGV[2] milliseconds.
#: Extends the caller's lease; 0 when it is gone (lapsed, or another owner
#: holds it): never taken again, since another owner may have come and gone
#: meanwhile, and what this one holds in memory may be stale.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: Lets the caller's lease go (KEYS[1] the lock, ARGV[1] the token).
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
