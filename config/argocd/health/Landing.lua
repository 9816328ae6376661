-- Argo CD health of a Moonlander Landing (moons.kingdon.ci). Source of truth: the argocd-cm
-- and argo-cd chart snippets next to this folder embed this file (hack/argocd_health.py).
-- Only Lua's base and table libraries are used: Argo CD runs custom checks without the
-- string library unless useOpenLibs is set.
local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function behind(observed)
  return observed ~= nil and obj.metadata.generation ~= nil and observed < obj.metadata.generation
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return (c.reason or "") .. ": " .. c.message
  end
  return c.reason or ""
end

-- Reasons that need a human: nothing changes until the Landing, its Secret or a
-- LandingPolicy is edited (the controller's Stalled reasons).
local permanent = {
  NotPermitted = true,
  InvalidSpec = true,
  InvalidKubeconfig = true,
  Conflict = true,
  SourceKeyNotFound = true,
  CrossNamespaceNotAllowed = true,
}

local hs = {}
local ready = condition("Ready")
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is set: Moonlander changes nothing"
  return hs
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Moonlander to report status"
  return hs
end
if behind(obj.status.observedGeneration) or behind(ready.observedGeneration) then
  hs.status = "Progressing"
  hs.message = "Waiting for Moonlander to observe generation " .. obj.metadata.generation
  return hs
end
if ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready.status == "False" and permanent[ready.reason] then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
