-- Argo CD health check for tiergate.io/ModerationModel: the tiergate operator's status.phase.
-- Installed as argocd-cm key resource.customizations.health.tiergate.io_ModerationModel
-- (manifests/argocd/argocd-cm-patch.yaml holds this file's text; tests/unit/test_argocd.py runs it).
--   Promoted                   -> Healthy
--   Pending, Verifying, Canary -> Progressing (phase, traffic on the candidate, its version)
--   RolledBack, Failed         -> Degraded (the rejected version and its failing vectors)
--   no status yet, or a status older than the spec (observedGeneration < generation) -> Progressing
local hs = {}

local function version_of(ref)
  if ref ~= nil and ref.version ~= nil then
    return ref.version
  end
  return nil
end

local function candidate_version(status)
  local version = version_of(status.candidate)
  if version == nil and status.lastAnalysis ~= nil then
    version = status.lastAnalysis.version
  end
  if version == nil and obj.spec ~= nil and obj.spec.model ~= nil then
    version = obj.spec.model.version
  end
  return version or "?"
end

local function failing_vectors(analysis)
  if analysis == nil or analysis.failingVectors == nil then
    return ""
  end
  local ids = {}
  local total = 0
  for _, vector in ipairs(analysis.failingVectors) do
    total = total + 1
    if total <= 10 then
      table.insert(ids, vector.id or "?")
    end
  end
  if total == 0 then
    return ""
  end
  local text = table.concat(ids, ", ")
  if total > 10 then
    text = text .. " and " .. (total - 10) .. " more"
  end
  return text
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tiergate operator to pick up this ModerationModel"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tiergate operator to observe generation " .. generation
  return hs
end

local phase = status.phase
local traffic = status.trafficPercent or 0
local serving = version_of(status.current)

if phase == "Promoted" then
  hs.status = "Healthy"
  hs.message = "Promoted: " .. (serving or candidate_version(status)) .. " serves all traffic"
  return hs
end

if phase == "Pending" or phase == "Verifying" or phase == "Canary" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. traffic .. "% of traffic on " .. candidate_version(status)
  if serving ~= nil and serving ~= candidate_version(status) then
    hs.message = hs.message .. " (" .. serving .. " serves the rest)"
  end
  return hs
end

-- The analysis of the rejected version itself (an older one would name the wrong vectors).
local function rejected_analysis(status, rejected)
  if status.lastAnalysis ~= nil and status.lastAnalysis.version == rejected then
    return status.lastAnalysis
  end
  return nil
end

if phase == "RolledBack" then
  hs.status = "Degraded"
  local rejected = candidate_version(status)
  hs.message = "RolledBack: " .. rejected .. " was rejected"
  if serving ~= nil then
    hs.message = hs.message .. ", all traffic on " .. serving
  end
  local vectors = failing_vectors(rejected_analysis(status, rejected))
  if vectors ~= "" then
    hs.message = hs.message .. "; failing vectors: " .. vectors
  elseif status.message ~= nil and status.message ~= "" then
    hs.message = hs.message .. "; " .. status.message
  end
  return hs
end

if phase == "Failed" then
  hs.status = "Degraded"
  local rejected = candidate_version(status)
  if status.message ~= nil and status.message ~= "" then
    hs.message = "Failed: " .. status.message
  else
    hs.message = "Failed: " .. rejected .. " cannot be deployed"
  end
  local vectors = failing_vectors(rejected_analysis(status, rejected))
  if vectors ~= "" then
    hs.message = hs.message .. "; failing vectors: " .. vectors
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown phase " .. tostring(phase)
return hs
