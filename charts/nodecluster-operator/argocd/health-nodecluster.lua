-- Argo CD health check of nodecluster.io/NodeCluster (Lua 5.1, as Argo CD runs it).
--
-- Install: argocd-cm key `resource.customizations.health.nodecluster.io_NodeCluster`
-- (see the repository README). Reads only what the operator publishes for every tool
-- that speaks kstatus: status.observedGeneration, the Ready / Stalled / Degraded /
-- Reconciling conditions, and status.state with its message.
--
--   Suspended    spec.paused is true: the operator changes nothing until it is unpaused;
--                or a process of spec.suspend holds back a change the cluster needs
--                (the Suspended condition, reason ChangesHeldBack)
--   Progressing  the operator has not yet seen this generation, or is still converging
--   Degraded     Stalled=True (needs help: missing provider, quota, bad config),
--                Degraded=True (works, but not fully) or state Error
--   Healthy      Ready=True for the current generation (Deployed, Stopped, Empty, Terminated)

local health = {}

local function condition(conditions, ctype)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
local generation = obj.metadata.generation

if obj.spec ~= nil and obj.spec.paused == true then
  health.status = "Suspended"
  health.message = "Reconciliation is paused (spec.paused)"
  if status ~= nil and status.state ~= nil then
    health.message = health.message .. "; last state " .. status.state
  end
  return health
end

if status == nil or status.observedGeneration == nil then
  health.status = "Progressing"
  health.message = "Waiting for the operator to observe the NodeCluster"
  return health
end

if generation ~= nil and status.observedGeneration < generation then
  health.status = "Progressing"
  health.message = "Waiting for the operator to observe generation " .. generation
    .. " (observed " .. status.observedGeneration .. ")"
  return health
end

local conditions = status.conditions
local state = status.state or "Unknown"

local stalled = condition(conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  health.status = "Degraded"
  health.message = "Stalled: " .. describe(stalled)
  return health
end

local degraded = condition(conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  health.status = "Degraded"
  health.message = state .. ": " .. describe(degraded)
  return health
end

if state == "Error" then
  health.status = "Degraded"
  health.message = "Error: " .. (status.message or "no node is ready")
  return health
end

local ready = condition(conditions, "Ready")
if ready ~= nil and ready.status == "True" then
  health.status = "Healthy"
  health.message = state
  if status.message ~= nil and status.message ~= "" then
    health.message = state .. ": " .. status.message
  end
  return health
end

-- Held back on purpose (spec.suspend), not converging: waiting would never end.
local suspended = condition(conditions, "Suspended")
if suspended ~= nil and suspended.status == "True" and suspended.reason == "ChangesHeldBack" then
  health.status = "Suspended"
  health.message = state .. ": " .. describe(suspended)
  return health
end

health.status = "Progressing"
health.message = state
local reconciling = condition(conditions, "Reconciling")
if reconciling ~= nil and reconciling.message ~= nil and reconciling.message ~= "" then
  health.message = state .. ": " .. reconciling.message
elseif status.message ~= nil and status.message ~= "" then
  health.message = state .. ": " .. status.message
end
return health
