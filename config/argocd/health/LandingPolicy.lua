-- Argo CD health of a Moonlander LandingPolicy (moons.kingdon.ci). Source of truth: the
-- argocd-cm and argo-cd chart snippets next to this folder embed this file
-- (hack/argocd_health.py). Only Lua's base and table libraries are used: Argo CD runs custom
-- checks without the string library unless useOpenLibs is set.
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

-- Entries of the spec that grant nothing: the first one, and how many there are.
local function first(entries, what)
  if entries == nil or #entries == 0 then
    return nil
  end
  local message = what .. ": " .. entries[1]
  if #entries > 1 then
    message = message .. " (and " .. (#entries - 1) .. " more)"
  end
  return message
end

local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Moonlander to report status"
  return hs
end
local ready = condition("Ready")
if behind(obj.status.observedGeneration) or (ready ~= nil and behind(ready.observedGeneration)) then
  hs.status = "Progressing"
  hs.message = "Waiting for Moonlander to observe generation " .. obj.metadata.generation
  return hs
end
local problem = first(obj.status.fenced, "fenced") or first(obj.status.ambiguous, "ambiguous")
if problem ~= nil then
  hs.status = "Degraded"
  hs.message = problem
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local reconciling = condition("Reconciling")
if ready ~= nil and ready.status ~= "True" then
  if ready.status == "False" and (reconciling == nil or reconciling.status ~= "True") then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end
-- Ready, or a current status without conditions (as Moonlander wrote before it had them).
local namespaces = obj.status.matchedNamespaces or {}
hs.status = "Healthy"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Applies to " .. #namespaces .. " namespace(s)"
end
return hs
