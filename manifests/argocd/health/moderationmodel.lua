-- Argo CD health check for tiergate.io/ModerationModel: the tiergate operator's status.phase.
-- Installed as argocd-cm key resource.customizations.health.tiergate.io_ModerationModel
-- (manifests/argocd/argocd-cm-patch.yaml holds this file's text; tests/unit/test_argocd.py runs it).
--   Promoted                   -> Healthy (Progressing when it names no serving version: the operator re-checks)
--   Pending, Verifying, Canary -> Progressing (phase, traffic on the candidate, its version)
--   RolledBack, Failed         -> Degraded (the rejected version and its failing vectors)
--   no status yet, or a status older than the spec (observedGeneration < generation) -> Progressing
-- Every field is read by type: a hand-edited status degrades the message, never the health check.
local hs = {}
local MAX_MESSAGE = 500

local function text(value)
  if type(value) == "string" and value ~= "" then
    return string.sub(value, 1, 80)
  end
  return nil
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  return nil
end

local function record(value)
  if type(value) == "table" then
    return value
  end
  return nil
end

local function finish(state, message)
  hs.status = state
  hs.message = string.sub(message, 1, MAX_MESSAGE)
  return hs
end

local function version_of(ref)
  ref = record(ref)
  if ref ~= nil then
    return text(ref.version)
  end
  return nil
end

local spec = record(obj.spec) or {}
local status = record(obj.status)

local function candidate_version()
  local version = version_of(status.candidate)
  if version == nil then
    version = version_of(status.lastAnalysis)
  end
  if version == nil then
    version = version_of(spec.model)
  end
  return version or "?"
end

local function failing_vectors(analysis)
  local vectors = analysis ~= nil and record(analysis.failingVectors) or nil
  if vectors == nil then
    return ""
  end
  local ids = {}
  local total = 0
  for _, vector in ipairs(vectors) do
    total = total + 1
    if total <= 10 then
      table.insert(ids, (record(vector) and text(vector.id)) or "?")
    end
  end
  if total == 0 then
    return ""
  end
  local joined = table.concat(ids, ", ")
  if total > 10 then
    joined = joined .. " and " .. (total - 10) .. " more"
  end
  return joined
end

if status == nil or text(status.phase) == nil then
  return finish("Progressing", "Waiting for the tiergate operator to pick up this ModerationModel")
end

local metadata = record(obj.metadata) or {}
local generation = number(metadata.generation)
local observed = number(status.observedGeneration)
if generation ~= nil and (observed == nil or observed < generation) then
  return finish("Progressing", "Waiting for the tiergate operator to observe generation " .. generation)
end

local phase = status.phase
local traffic = number(status.trafficPercent) or 0
local serving = version_of(status.current)
local message = text(status.message)

if phase == "Promoted" then
  if serving == nil then
    return finish("Progressing", "Promoted names no serving version: the operator verifies the spec's version again")
  end
  return finish("Healthy", "Promoted: " .. serving .. " serves all traffic")
end

if phase == "Pending" or phase == "Verifying" or phase == "Canary" then
  local candidate = candidate_version()
  local line = phase .. ": " .. traffic .. "% of traffic on " .. candidate
  if serving ~= nil and serving ~= candidate then
    line = line .. " (" .. serving .. " serves the rest)"
  end
  return finish("Progressing", line)
end

-- The analysis of the rejected version itself (an older one would name the wrong vectors).
local function rejected_analysis(rejected)
  local analysis = record(status.lastAnalysis)
  if analysis ~= nil and version_of(analysis) == rejected then
    return analysis
  end
  return nil
end

if phase == "RolledBack" then
  local rejected = candidate_version()
  local line = "RolledBack: " .. rejected .. " was rejected"
  if serving ~= nil then
    line = line .. ", all traffic on " .. serving
  end
  local vectors = failing_vectors(rejected_analysis(rejected))
  if vectors ~= "" then
    line = line .. "; failing vectors: " .. vectors
  elseif type(status.message) == "string" and status.message ~= "" then
    line = line .. "; " .. status.message
  end
  return finish("Degraded", line)
end

if phase == "Failed" then
  local rejected = candidate_version()
  local line = "Failed: " .. rejected .. " cannot be deployed"
  if type(status.message) == "string" and status.message ~= "" then
    line = "Failed: " .. status.message
  end
  local vectors = failing_vectors(rejected_analysis(rejected))
  if vectors ~= "" then
    line = line .. "; failing vectors: " .. vectors
  end
  return finish("Degraded", line)
end

finish("Unknown", "Unknown phase " .. tostring(phase))
return hs
