-- Argo CD health check for scim.nhi.dev/ServiceIdentity (docs/gitops.md).
-- Reads the kstatus conditions the operator writes: Stalled (needs a human, expiry included)
-- is Degraded, Reconciling is Progressing, Ready is Healthy, or Suspended under spec.suspend.
-- Uses only Lua's base library, which argocd-cm scripts get without useOpenLibs.
local function describe(c)
  if c.message == nil or c.message == "" then
    return c.reason or ""
  end
  return (c.reason or "") .. ": " .. c.message
end

local hs = {}
local ready, stalled, reconciling = nil, nil, nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then ready = c end
    if c.type == "Stalled" and c.status == "True" then stalled = c end
    if c.type == "Reconciling" and c.status == "True" then reconciling = c end
  end
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deprovisioning the accounts before deletion"
  if ready ~= nil then hs.message = describe(ready) end
  return hs
end
if obj.status == nil or obj.status.observedGeneration == nil
   or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  if reconciling ~= nil then hs.message = describe(reconciling) end
  return hs
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end
if ready ~= nil and ready.status == "True" then
  if obj.spec ~= nil and obj.spec.suspend == true then
    hs.status = "Suspended"
    hs.message = "spec.suspend: the accounts are inactive on every target"
  else
    hs.status = "Healthy"
    hs.message = describe(ready)
  end
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the operator"
if ready ~= nil then hs.message = describe(ready) end
return hs
