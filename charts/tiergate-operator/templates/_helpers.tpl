{{/* The release's full name: the Lease, the ServiceAccount, the Deployment and the RBAC objects are named after it. */}}
{{- define "tiergate-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The pods' selector; the serving chart's NetworkPolicy admits pods with app.kubernetes.io/name: tiergate-operator. */}}
{{- define "tiergate-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "tiergate-operator.labels" -}}
{{ include "tiergate-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tiergate
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tiergate-operator.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "tiergate-operator.fullname" .) -}}
{{- end -}}

{{- define "tiergate-operator.image" -}}
{{- $image := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- if .Values.image.digest -}}
{{- $image = printf "%s@%s" $image .Values.image.digest -}}
{{- end -}}
{{- $image -}}
{{- end -}}

{{/*
What the operator does with the API, and nothing more (tests/unit/test_operator_chart.py holds
these equal to the verbs serving/operator uses): read and watch ModerationModels, write their
status and finalizer, own the InferenceServices it creates, record Events.
*/}}
{{- define "tiergate-operator.rules" -}}
- apiGroups: [tiergate.io]
  resources: [moderationmodels]
  verbs: [get, list, watch, patch]  # patch: the finalizer
- apiGroups: [tiergate.io]
  resources: [moderationmodels/status]
  verbs: [update]  # a PUT guarded by resourceVersion
- apiGroups: [tiergate.io]
  resources: [moderationmodels/finalizers]
  verbs: [update]  # blockOwnerDeletion on the InferenceService it owns (OwnerReferencesPermissionEnforcement)
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
