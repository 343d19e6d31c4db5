{{- define "tiergate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.model.version | quote }}
app.kubernetes.io/part-of: tiergate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The regression Job's pods carry this beside tiergate.labels; the NetworkPolicy admits them. */}}
{{- define "tiergate.regressionRole" -}}
tiergate.io/role: regression-test
{{- end -}}

{{/*
Container hardening shared by the serving container and the regression Job. UID/GID 1000 is
the `tiergate` user both images are built with (the UID build argument of their Dockerfiles).
Only fields Knative accepts on a container (its SecurityContext mask) — the ServingRuntime's
container becomes a Knative revision's user container in Serverless mode.
*/}}
{{- define "tiergate.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The HTTP probes on the gateway's canary health check (serving.health). */}}
{{- define "tiergate.probe" -}}
httpGet:
  path: {{ .path }}
  port: 8080
initialDelaySeconds: {{ .health.initialDelaySeconds | int64 }}
periodSeconds: {{ .health.periodSeconds | int64 }}
timeoutSeconds: {{ .health.timeoutSeconds | int64 }}
failureThreshold: {{ .failureThreshold | int64 }}
{{- end -}}

{{/*
The review service (review-*.yaml). Its pods carry these labels, and no version label: a promotion
changes model.version, and the review pod (with its in-process sessions) must not restart for that.
*/}}
{{- define "tiergate.reviewSelector" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
tiergate.io/role: review
{{- end -}}

{{- define "tiergate.reviewLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/component: review
app.kubernetes.io/part-of: tiergate
{{ include "tiergate.reviewSelector" . }}
{{- end -}}

{{- define "tiergate.reviewName" -}}
{{ printf "%s-review" .Release.Name }}
{{- end -}}
