{{/* The chart name, overridable. */}}
{{- define "nodecluster-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of every resource: the release name, plus the chart name unless the
release name contains it already. */}}
{{- define "nodecluster-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nodecluster-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "nodecluster-operator.labels" -}}
helm.sh/chart: {{ include "nodecluster-operator.chart" . }}
{{ include "nodecluster-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: nodecluster-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pod: never change them (selectors are immutable). */}}
{{- define "nodecluster-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodecluster-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nodecluster-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nodecluster-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's command-line arguments. */}}
{{/*
Which installation this is. With operator.installationId: that id, verbatim. Without it,
the name "<release namespace>.<release name>" (cut to 63 characters with a hash of the
whole), to which the operator appends 8 hex digits naming the Kubernetes cluster (from the
uid of the kube-system Namespace): two releases, or one release on two clusters sharing a
cloud account, never share an id.
*/}}
{{- define "nodecluster-operator.installationName" -}}
{{- $id := printf "%s.%s" .Release.Namespace .Release.Name -}}
{{- if gt (len $id) 63 -}}
{{- $id = printf "%s-%s" (trunc 52 $id) (trunc 10 (sha256sum $id)) -}}
{{- end -}}
{{- $id -}}
{{- end -}}

{{- define "nodecluster-operator.args" -}}
- run
- --liveness
- http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- if .Values.metrics.enabled }}
- --metrics-address
- 0.0.0.0:{{ .Values.metrics.port }}
{{- end }}
{{- if .Values.operator.installationId }}
- --installation-id
- {{ .Values.operator.installationId | quote }}
{{- else }}
- --installation-name
- {{ include "nodecluster-operator.installationName" . }}
{{- end }}
{{- range .Values.operator.watchNamespaces }}
- --namespace
- {{ . }}
{{- end }}
{{- if .Values.peering.enabled }}
- --peering
- {{ .Values.peering.name }}
{{- end }}
{{- if .Values.nodes.enabled }}
- --nodes
{{- end }}
{{- if .Values.operator.verbose }}
- --verbose
{{- end }}
{{- end }}

{{/* The metrics Service's name, also the `job` label a ServiceMonitor gives its targets. */}}
{{- define "nodecluster-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "nodecluster-operator.fullname" .) -}}
{{- end -}}
