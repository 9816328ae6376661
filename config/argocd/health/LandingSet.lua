-- Argo CD health of a Moonlander LandingSet (moons.kingdon.ci). Source of truth: the argocd-cm
-- and argo-cd chart snippets next to this folder embed this file (hack/argocd_health.py).
-- Only Lua's base and table libraries are used: Argo CD runs custom checks without the
-- string library unless useOpenLibs is set. Each generated Landing has its own health.
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

local hs = {}
local ready = condition("Ready")
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
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" and ready.reason == "InvalidSpec" then
  -- The set itself cannot be used as written.
  hs.status = "Degraded"
else
  -- Landings still landing, or failing for reasons that may pass (a Landing that needs a
  -- human is Degraded on its own, and the set is Stalled once Moonlander says so).
  hs.status = "Progressing"
end
hs.message = describe(ready)
return hs
