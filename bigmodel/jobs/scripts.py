"""Lua scripts: every decision about a job's state is one of these, one atomic step in Redis.

They are the rules of the state machine (there is no second copy in Python):
queued -> running (claim), running -> succeeded|failed|cancelled (finish, cancel, reap),
running -> queued (hand-over by a stopping worker, or the reaper after a lost worker),
queued -> cancelled (cancel). Nothing leaves a final state.

Fencing: each claim makes a new attempt (the `attempts` counter); a worker names its attempt in
every write, and a write from an attempt that is no longer current changes nothing.

Deadlines: one sorted set (`bm:deadlines`, score = Redis time in ms) holds every job that needs
attention at some time: a running job's lease, a queued job not yet published, a queued job whose
message a worker took but did not claim. The reaper reads the lapsed ones. Time is always Redis's
own (TIME), so machines with skewed clocks agree.

Fan-out: a parent parks itself on its children (FAN_OUT: running, no lease, no worker); every
finalize of a child counts it on the parent, and the last one requeues the parent (child_final).

Every field is JSON except `state`, kept bare so that scripts compare it as a string.
"""

PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function event(stream, kind, ts, data, maxlen)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'e',
             cjson.encode({type=kind, ts=ts, data=data}))
end
local function field(job, name)
  local raw = redis.call('HGET', job, name)
  if not raw then return nil end
  local value = cjson.decode(raw)
  if value == cjson.null then return nil end
  return value
end
-- The tenant's quota sets a job is counted in (the `quota` field, written at creation; absent on
-- records older than quotas): queued jobs, admitted jobs (on a queue or running) per queue, in all,
-- and GPU jobs; and the tenant's line on its queue, where it waits for admission.
local function release(job, id)
  local q = field(job, 'quota')
  if not q then return end
  for _, k in ipairs(q.admitted) do redis.call('SREM', k, id) end
end
-- Whether the tenant may have one more job admitted on this job's queue.
local function has_room(q, slots, cap, gpu_cap)
  return redis.call('SCARD', q.admitted[1]) < tonumber(slots)
    and redis.call('SCARD', q.admitted[2]) < tonumber(cap)
    and (not q.admitted[3] or redis.call('SCARD', q.admitted[3]) < tonumber(gpu_cap))
end
-- Back to the queue, unpublished: whoever requeues publishes next; the reaper does if it cannot.
local function requeue(job, events, deadlines, id, grace_ms, ts, data, maxlen)
  redis.call('HSET', job, 'state', 'queued', 'worker', 'null', 'published', 'false',
             'handover_requested', 'false')
  redis.call('HDEL', job, 'claim_token', 'delivered_to', 'hard_deadline')
  redis.call('ZADD', deadlines, now_ms() + grace_ms, id)
  local q = field(job, 'quota')
  if q then redis.call('SADD', q.queued, id) end
  event(events, 'state', ts, data, maxlen)
end
-- A child of a fanned-out parent became final: count it on the parent; the last one wakes the
-- parent (requeued, unpublished: whoever finalized the child publishes it, else the reaper does).
local function child_final(parent, deadlines, state, weight, ts, maxlen)
  if redis.call('HGET', parent, 'awaiting') ~= 'true' or redis.call('HGET', parent, 'state') ~= 'running' then
    return
  end
  local pending = redis.call('HINCRBY', parent, 'pending', -1)
  local done = redis.call('HINCRBY', parent, 'children_done', 1)
  local failed = tonumber(redis.call('HGET', parent, 'children_failed') or 0)
  if state ~= 'succeeded' then failed = redis.call('HINCRBY', parent, 'children_failed', 1) end
  local current = redis.call('HINCRBY', parent, 'weight_done', weight)
  local total = tonumber(redis.call('HGET', parent, 'weight_total') or 1)
  local count = #cjson.decode(redis.call('HGET', parent, 'children'))
  local percent = math.floor(10000 * current / math.max(total, 1)) / 100
  redis.call('HSET', parent, 'progress', cjson.encode({stage='children', current=current, total=total,
             percent=percent, metrics={done=done, failed=failed, total=count}}))
  if pending <= 0 then
    local id = cjson.decode(redis.call('HGET', parent, 'id'))
    redis.call('HSET', parent, 'awaiting', 'false')
    redis.call('HINCRBY', parent, 'handovers', 1)  -- waking is not a lost attempt
    local grace = tonumber(redis.call('HGET', parent, 'wake_grace_ms'))
    requeue(parent, parent .. ':events', deadlines, id, grace, ts,
            {state='queued', reason='children_done', message='its ' .. count .. ' child jobs ended'}, maxlen)
  end
end
-- The one way a job becomes final: fields set, deadline dropped, queued for writing to the store,
-- and a TTL on its keys (a final job never lives in Redis forever; the store keeps its record).
local function finalize(job, events, deadlines, persist, id, state, fields, ts, ttl, by, data, maxlen)
  redis.call('HSET', job, 'state', state, 'finished_at', cjson.encode(ts), 'finished_by', cjson.encode(by))
  for k, v in pairs(fields) do redis.call('HSET', job, k, v) end
  redis.call('HDEL', job, 'claim_token', 'delivered_to')
  redis.call('ZREM', deadlines, id)
  redis.call('ZADD', persist, now_ms(), id)
  local q = field(job, 'quota')
  if q then
    redis.call('SREM', q.queued, id)
    redis.call('ZREM', q.line, id)
    release(job, id)
  end
  event(events, 'state', ts, data, maxlen)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', events, ttl)
  local parent = field(job, 'parent_key')
  if parent then child_final(parent, deadlines, state, tonumber(field(job, 'weight') or 1), ts, maxlen) end
end
"""

# Create a job unless the idempotency key already names one, or its tenant holds as many queued jobs
# as it may; trim the tenant's index.
# KEYS: job, index, idempotency key ("" none), events, deadlines, the tenant's queued set
# ARGV: id, score, fields (JSON object of encoded fields), idempotency ttl, created_at, publish grace ms,
#       index limit, oldest score kept, max events, queued cap
# Returns {1, id} created | {0, id} the job that exists | {-1, queued count} over the cap
CREATE = PRELUDE + """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end  -- a child made again by a re-run
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
local queued = redis.call('SCARD', KEYS[6])
if queued >= tonumber(ARGV[10]) then return {-1, queued} end
redis.call('SADD', KEYS[6], ARGV[1])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', tonumber(ARGV[4])) end
for k, v in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[1], k, v) end
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[8])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[7])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1) end
event(KEYS[4], 'state', ARGV[5], {state='queued'}, ARGV[9])
redis.call('ZADD', KEYS[5], now_ms() + tonumber(ARGV[6]), ARGV[1])
return {1, ARGV[1]}
"""

# Admission, the tenant's turn: a queued job goes onto its queue only while its tenant has fewer
# admitted jobs (on the queue or running) there than the queue has worker processes (plus one, ready
# for the next free process), and fewer in all than its running cap (and GPU cap); otherwise it waits
# in the tenant's line, in priority then arrival order, without a deadline (nothing is lost: it is
# in Redis). So one tenant's backlog waits in its own line, and another tenant's job goes onto the
# queue at once and starts at the next free process.
# KEYS: job, deadlines; ARGV: id, slots, running cap, gpu cap, line score, waiting JSON
# Returns 'send' (admitted: publish it) | 'lined' | 'no' (not queued)
ADMIT = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 'no' end
local q = field(KEYS[1], 'quota')
if not q then return 'send' end
local id = ARGV[1]
if redis.call('SISMEMBER', q.admitted[2], id) == 1 then return 'send' end
local head = redis.call('ZRANGE', q.line, 0, 0)[1]
if has_room(q, ARGV[2], ARGV[3], ARGV[4]) and (not head or head == id) then
  for _, k in ipairs(q.admitted) do redis.call('SADD', k, id) end
  redis.call('ZREM', q.line, id)
  if head then redis.call('HSET', KEYS[1], 'waiting', 'null') end
  return 'send'
end
redis.call('ZADD', q.line, 'NX', tonumber(ARGV[5]), id)
redis.call('SADD', q.lines, q.member)
redis.call('ZREM', KEYS[2], id)
local waiting = cjson.decode(ARGV[6])
waiting['position'] = redis.call('ZRANK', q.line, id) + 1
redis.call('HSET', KEYS[1], 'waiting', cjson.encode(waiting))
return 'lined'
"""

# Admit the heads of a tenant's line on one queue while it has room (after one of its jobs ended).
# Each admitted job gets a publish deadline: if its publisher dies, the reaper publishes it.
# KEYS: line, lines, deadlines; ARGV: member, slots, running cap, gpu cap, grace ms, job key prefix, most
# Returns the ids admitted
ADMIT_NEXT = PRELUDE + """
local admitted = {}
while #admitted < tonumber(ARGV[7]) do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not head then
    redis.call('SREM', KEYS[2], ARGV[1])
    break
  end
  local job = ARGV[6] .. head
  local q = field(job, 'quota')
  if redis.call('HGET', job, 'state') ~= 'queued' or not q then
    redis.call('ZREM', KEYS[1], head)
  else
    if not has_room(q, ARGV[2], ARGV[3], ARGV[4]) then break end
    for _, k in ipairs(q.admitted) do redis.call('SADD', k, head) end
    redis.call('ZREM', KEYS[1], head)
    redis.call('HSET', job, 'waiting', 'null', 'published', 'false')
    redis.call('ZADD', KEYS[3], now_ms() + tonumber(ARGV[5]), head)
    admitted[#admitted + 1] = head
  end
end
return admitted
"""

# The job's message is on its queue: look again later whether it is still there (a consumer that
# popped it and died before recording it would lose it), unless a worker already took it.
# KEYS: job, deadlines; ARGV: id, check ms
PUBLISHED = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'published', 'true')
if redis.call('HEXISTS', KEYS[1], 'delivered_to') == 0 then
  redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[2]), ARGV[1])
end
return 1
"""

# A published job's check came due and the reaper looked at its queue: if the queue is empty the
# message was lost in transit (publish it again), else look again later.
# KEYS: job, deadlines; ARGV: id, queue empty (1/0), grace ms, check ms
# Returns 'publish' | 'waiting' | 'alive' (something else happened to the job meanwhile)
RECHECK = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or not field(KEYS[1], 'published')
   or redis.call('HEXISTS', KEYS[1], 'delivered_to') == 1 then return 'alive' end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'published', 'false')
  redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
  return 'publish'
end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[4]), ARGV[1])
return 'waiting'
"""

# A worker took the job's message: it must claim the job soon, or the reaper publishes it again.
# KEYS: job, deadlines; ARGV: id, worker node, grace ms
DELIVERED = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'delivered_to', cjson.encode(ARGV[2]))
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# Take a queued job: a new attempt with a lease. A retried claim (same token) answers the same.
# KEYS: job, events, deadlines; ARGV: id, worker, lease ms, now (RFC 3339), token, max events
# Returns {outcome, attempt, the record's fields and values... (when claimed)}:
# outcome 'claimed' | 'held' (another attempt runs it) | 'missing' | a final state
CLAIM = PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', 0} end
if state == 'running' then
  if field(KEYS[1], 'claim_token') == ARGV[5] then return {'claimed', field(KEYS[1], 'attempts')} end
  return {'held', field(KEYS[1], 'attempts')}
end
if state ~= 'queued' then return {state, field(KEYS[1], 'attempts') or 0} end
local attempt = (field(KEYS[1], 'attempts') or 0) + 1
local now = now_ms()
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', cjson.encode(ARGV[2]), 'attempts', attempt,
           'started_at', cjson.encode(ARGV[4]), 'claim_token', cjson.encode(ARGV[5]),
           'handover_requested', 'false')
redis.call('HDEL', KEYS[1], 'delivered_to')
local q = field(KEYS[1], 'quota')
if q then redis.call('SREM', q.queued, ARGV[1]) end
local limits = field(KEYS[1], 'limits')
if limits and limits['hard'] then
  redis.call('HSET', KEYS[1], 'hard_deadline', now + 1000 * tonumber(limits['hard']))
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[1])
event(KEYS[2], 'state', ARGV[4], {state='running', worker=ARGV[2], attempt=attempt}, ARGV[6])
local out = {'claimed', attempt}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end  -- the record: no second read
return out
"""

# Extend the lease of the current attempt (even one that lapsed, if nobody acted on it yet).
# KEYS: job, deadlines; ARGV: id, attempt, lease ms
RENEW = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'awaiting') == 'true' then return 0 end  -- fanned out: no lease
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# The current attempt of a parent hands its work to child jobs (already created) and lets its worker
# go: the job stays `running`, without a lease or a worker, until its last child becomes final
# (PRELUDE's child_final). Children that already ended are counted now.
# KEYS: job, events, deadlines, the children's jobs...
# ARGV: id, attempt, children ids (JSON list), total weight, wake grace ms, now, max events
# Returns 'waiting' | 'wake' (every child had ended: requeued, publish it) | 'superseded'
FAN_OUT = PRELUDE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'superseded' end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 'superseded' end
local pending, done, failed, weight = 0, 0, 0, 0
for i = 4, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state == 'succeeded' or state == 'failed' or state == 'cancelled' then
    done = done + 1
    weight = weight + tonumber(field(KEYS[i], 'weight') or 1)
    if state ~= 'succeeded' then failed = failed + 1 end
  else
    pending = pending + 1
  end
end
local count = #KEYS - 3
redis.call('HSET', KEYS[1], 'children', ARGV[3], 'pending', pending, 'children_done', done,
           'children_failed', failed, 'weight_done', weight, 'weight_total', ARGV[4],
           'wake_grace_ms', ARGV[5], 'worker', 'null', 'awaiting', 'true')
redis.call('HDEL', KEYS[1], 'claim_token', 'hard_deadline')
redis.call('ZREM', KEYS[3], ARGV[1])
release(KEYS[1], ARGV[1])  -- its slot goes to its children (and the tenant's other jobs)
local total = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'progress', cjson.encode({stage='children', current=weight, total=total,
           percent=math.floor(10000 * weight / math.max(total, 1)) / 100,
           metrics={done=done, failed=failed, total=count}}))
event(KEYS[2], 'log', ARGV[6], {level='info', message='waiting for ' .. count .. ' child jobs'}, ARGV[7])
if pending == 0 then
  redis.call('HSET', KEYS[1], 'awaiting', 'false')
  redis.call('HINCRBY', KEYS[1], 'handovers', 1)
  requeue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[5]), ARGV[6],
          {state='queued', reason='children_done', message='its ' .. count .. ' child jobs ended'}, ARGV[7])
  return 'wake'
end
return 'waiting'
"""

# Record progress of the current attempt.
# KEYS: job, events; ARGV: attempt, progress JSON, event JSON, max events
PROGRESS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[4]), '*', 'e', ARGV[3])
return 1
"""

# A log line of the current attempt (a superseded one writes nothing, not even to the log).
# KEYS: job, events; ARGV: attempt, event JSON, max events
LOG = """
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'e', ARGV[2])
return 1
"""

# The current attempt ends the job. A retried finish of the same attempt answers 'ok' again.
# KEYS: job, events, deadlines, persist
# ARGV: id, attempt, final state, fields (JSON object of encoded fields), now, ttl, event data, max events
# Returns 'ok' | 'superseded' | 'missing' | the state that refused
FINISH = PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 'superseded' end
if state == ARGV[3] and redis.call('HGET', KEYS[1], 'finished_by') == ARGV[2] then return 'ok' end
if state ~= 'running' then return state end
finalize(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[3], cjson.decode(ARGV[4]), ARGV[5],
         tonumber(ARGV[6]), tonumber(ARGV[2]), cjson.decode(ARGV[7]), ARGV[8])
return 'ok'
"""

# A stopping worker gives a running job back to its queue; this costs no attempt (handovers + 1).
# A job whose cancel was asked is cancelled instead.
# KEYS: job, events, deadlines, persist
# ARGV: id, attempt ("" to match the worker instead), worker ("" any), now, grace ms, reason, ttl,
#       max events
# Returns 'queued' | 'cancelled' | 'superseded' | 'missing' | the state that refused
HAND_BACK = PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'running' then return state end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 'superseded' end
if ARGV[3] ~= '' and field(KEYS[1], 'worker') ~= ARGV[3] then return 'superseded' end
if ARGV[2] == '' and ARGV[3] == '' then return 'superseded' end
local attempt = field(KEYS[1], 'attempts')
if field(KEYS[1], 'cancel_requested') then
  local err = {type='cancelled', message='the job was cancelled'}
  finalize(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], 'cancelled', {error=cjson.encode(err)}, ARGV[4],
           tonumber(ARGV[7]), attempt, {state='cancelled', error=err}, ARGV[8])
  return 'cancelled'
end
redis.call('HINCRBY', KEYS[1], 'handovers', 1)
requeue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[5]), ARGV[4],
        {state='queued', reason='handed_over', message=ARGV[6], attempt=attempt}, ARGV[8])
return 'queued'
"""

# Ask the jobs that a stopping worker's processes run to come back at their next checkpoint.
# KEYS: job; ARGV: worker prefix
REQUEST_HANDOVER = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local worker = cjson.decode(redis.call('HGET', KEYS[1], 'worker') or 'null')
if type(worker) ~= 'string' or string.sub(worker, 1, string.len(ARGV[1])) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'handover_requested', 'true')
return 1
"""

# Cancel: a queued job (or a running one whose worker is gone) at once; a live running one is flagged.
# KEYS: job, events, deadlines, persist; ARGV: id, now, ttl, max events
# Returns 'cancelled-now' | 'requested' | 'missing' | the final state it already has
CANCEL = PRELUDE + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local err = {type='cancelled', message='the job was cancelled'}
local lapsed = true
if state == 'running' then
  local deadline = redis.call('ZSCORE', KEYS[3], ARGV[1])
  lapsed = (not deadline) or tonumber(deadline) <= now_ms()
end
if state == 'queued' or (state == 'running' and lapsed) then
  finalize(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], 'cancelled',
           {error=cjson.encode(err), cancel_requested='true'}, ARGV[2], tonumber(ARGV[3]), 'user',
           {state='cancelled', error=err}, ARGV[4])
  return 'cancelled-now'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 'true')
  event(KEYS[2], 'log', ARGV[2], {level='info', message='cancel requested'}, ARGV[4])
  return 'requested'
end
return state
"""

# The reaper's one decision about a job whose deadline passed.
# KEYS: job, events, deadlines, persist
# ARGV: id, max attempts, now (RFC 3339), publish grace ms, ttl, max events
# Returns 'publish' (it is queued and unpublished: publish it) | 'check' (published: is its message
# still on its queue?) | 'cancelled' | 'failed' | 'alive' | 'gone'
REAP = PRELUDE + """
local now = now_ms()
local deadline = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not deadline then return 'gone' end
if tonumber(deadline) > now then return 'alive' end
local state = redis.call('HGET', KEYS[1], 'state')
local delivered = redis.call('HEXISTS', KEYS[1], 'delivered_to') == 1
if state == 'queued' and field(KEYS[1], 'published') and not delivered then return 'check' end
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'published', 'false')
  redis.call('HDEL', KEYS[1], 'delivered_to')
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
  return 'publish'
end
if state ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 'gone'
end
local attempt = field(KEYS[1], 'attempts') or 0
local lost = attempt - (field(KEYS[1], 'handovers') or 0)
local worker = field(KEYS[1], 'worker')
local hard = field(KEYS[1], 'hard_deadline')
local err = nil
local final = 'failed'
if field(KEYS[1], 'cancel_requested') then
  final, err = 'cancelled', {type='cancelled', message='the job was cancelled'}
elseif hard and now >= hard then
  err = {type='time_limit', message='the job ran past its hard time limit and its process was stopped'}
elseif lost >= tonumber(ARGV[2]) then
  err = {type='worker_lost', message='the job lost its worker ' .. lost .. ' times (last: ' ..
         tostring(worker) .. '); it is not tried again'}
end
if err then
  finalize(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], final, {error=cjson.encode(err)}, ARGV[3],
           tonumber(ARGV[5]), 'reaper', {state=final, error=err}, ARGV[6])
  return final
end
requeue(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[4]), ARGV[3],
        {state='queued', reason='worker_lost', attempt=attempt, lapsed_ms=now - tonumber(deadline),
         message='the lease of ' .. tostring(worker) .. ' lapsed; the job goes back to its queue'}, ARGV[6])
return 'publish'
"""
