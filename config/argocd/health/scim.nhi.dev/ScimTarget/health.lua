-- Argo CD health check for scim.nhi.dev/ScimTarget and scim.nhi.dev/ClusterScimTarget
-- (docs/gitops.md; the two files are the same script). Ready=True is Healthy; Ready=False (endpoint
-- unreachable, credentials refused, discovery failed) and Stalled=True (invalid spec, circuit
-- breaker open) are Degraded: a human has to look at the endpoint, its Secret or the breaker.
-- Uses only Lua's base library, which argocd-cm scripts get without useOpenLibs.
local function describe(c)
  if c.message == nil or c.message == "" then
    return c.reason or ""
  end
  return (c.reason or "") .. ": " .. c.message
end

local hs = {}
local ready, stalled = nil, nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then ready = c end
    if c.type == "Stalled" and c.status == "True" then stalled = c end
  end
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the identities using this target to deprovision"
  if ready ~= nil and ready.status ~= "True" then hs.message = describe(ready) end
  return hs
end
if obj.status == nil or obj.status.observedGeneration == nil
   or obj.status.observedGeneration < obj.metadata.generation or ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the first probe of the endpoint"
  return hs
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
hs.message = describe(ready)
return hs
