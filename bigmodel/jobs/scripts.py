"""Lua scripts that make each job state change one atomic step in Redis."""

# Create a job unless the idempotency key already names one.
# KEYS: job hash, tenant index zset, idempotency key ("" none), events stream
# ARGV: job id, score, fields (JSON object), idempotency ttl, event (JSON), job ttl
CREATE = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[4]))
end
local fields = cjson.decode(ARGV[3])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[1])
redis.call('XADD', KEYS[4], '*', 'e', ARGV[5])
return {1, ARGV[1]}
"""

# Take a job for a worker.
# KEYS: job hash, events stream, lease key
# ARGV: worker, lease ms, now (RFC 3339), max attempts, event template state json, lost error json
# Returns: 'claimed' | 'held' | 'missing' | 'exhausted' | <terminal state>
CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'succeeded' or state == 'failed' or state == 'cancelled' then return state end
if state == 'running' and redis.call('EXISTS', KEYS[3]) == 1 then return 'held' end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') + 1
if state == 'running' and attempts > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', cjson.encode(ARGV[3]),
             'error', ARGV[6])
  redis.call('XADD', KEYS[2], '*', 'e', cjson.encode({type='state', ts=ARGV[3],
             data={state='failed', error=cjson.decode(ARGV[6])}}))
  return 'exhausted'
end
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', cjson.encode(ARGV[1]),
           'attempts', attempts, 'started_at', cjson.encode(ARGV[3]))
redis.call('SET', KEYS[3], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('XADD', KEYS[2], '*', 'e', cjson.encode({type='state', ts=ARGV[3],
           data={state='running', worker=ARGV[1], attempts=attempts}}))
return 'claimed'
"""

# Move a job between states if it is in one of the allowed ones (and held by the worker, if given).
# KEYS: job hash, events stream, lease key
# ARGV: allowed states (comma separated), new state, fields (JSON object), event (JSON), worker ("" any)
# Returns: 'ok' or the state that refused the move ('missing' when there is no job)
TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return state end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'worker') ~= cjson.encode(ARGV[5]) then
  return 'not-holder'
end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
local fields = cjson.decode(ARGV[3])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
if ARGV[2] ~= 'running' then redis.call('DEL', KEYS[3]) end
redis.call('XADD', KEYS[2], '*', 'e', ARGV[4])
return 'ok'
"""

# Renew a lease only if this worker still holds it.
# KEYS: lease key; ARGV: worker, lease ms
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# Ask a job to stop: a queued job is cancelled at once, a running one is flagged.
# KEYS: job hash, events stream, lease key; ARGV: now, event for queued, event for running
# Returns: 'cancelled-now' | 'requested' | <terminal state> | 'missing'
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', cjson.encode(ARGV[1]),
             'cancel_requested', 'true')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
  return 'cancelled-now'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
  redis.call('XADD', KEYS[2], '*', 'e', ARGV[3])
  return 'requested'
end
return state
"""

# Record progress only while the job is running under this worker.
# KEYS: job hash, events stream; ARGV: worker, progress JSON, event JSON, max events
PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'worker') ~= cjson.encode(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[4]), '*', 'e', ARGV[3])
return 1
"""
