-- Applies the Redis effects of a run of events from one Kafka partition, atomically and once.
-- KEYS[1]: the partition's watermark (highest offset already applied).
-- ARGV[1]: JSON list of {o = offset, ops = {...}} in offset order; ops are built by feature_updates.py.
-- Events at or below the watermark were applied before (a redelivery) and are skipped.
local watermark = tonumber(redis.call('GET', KEYS[1]) or '-1')
local events = cjson.decode(ARGV[1])
local applied = 0
local last = watermark

local function basket(session_key, item, ts, neighbours_prefix, cap)
  -- Count a pair once per basket: an item carted twice in one session adds nothing new.
  if redis.call('ZSCORE', session_key, item) then
    redis.call('ZADD', session_key, 'GT', ts, item)
    return
  end
  local others = redis.call('ZRANGE', session_key, 0, -1)
  for _, other in ipairs(others) do
    redis.call('ZINCRBY', neighbours_prefix .. item, 1, other)
    redis.call('ZINCRBY', neighbours_prefix .. other, 1, item)
  end
  redis.call('ZADD', session_key, ts, item)
  redis.call('ZREMRANGEBYRANK', session_key, 0, -(cap + 1))
end

for _, event in ipairs(events) do
  if event.o > watermark then
    for _, op in ipairs(event.ops) do
      local kind = op[1]
      if kind == 'zincr' then
        redis.call('ZINCRBY', op[2], op[3], op[4])
      elseif kind == 'hincr' then
        redis.call('HINCRBY', op[2], op[3], op[4])
      elseif kind == 'hincrfloat' then
        -- op[4] is a decimal string: the sum, stored as a string, depends only on the ops and their order.
        redis.call('HINCRBYFLOAT', op[2], op[3], op[4])
      elseif kind == 'sadd' then
        redis.call('SADD', op[2], op[3])
      elseif kind == 'recent' then
        redis.call('ZADD', op[2], 'GT', op[4], op[3])
        redis.call('ZREMRANGEBYRANK', op[2], 0, -(op[5] + 1))
      elseif kind == 'affinity' then
        local category = redis.call('HGET', op[2], 'affinity_category')
        if category and category ~= '' then
          redis.call('ZINCRBY', op[3], op[4], category)
        end
      elseif kind == 'basket' then
        basket(op[2], op[3], op[4], op[5], op[6])
      else
        return redis.error_reply('unknown effect ' .. tostring(kind))
      end
    end
    applied = applied + 1
    last = event.o
  end
end
if last > watermark then
  redis.call('SET', KEYS[1], string.format('%d', last))
end
return applied
