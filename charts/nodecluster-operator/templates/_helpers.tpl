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

{{/* The operator's command-line arguments. The Lease's timings are always given, so that
what runs is what the values say, whatever the operator's own defaults. The Lease's
namespace is the release namespace, from POD_NAMESPACE (the Deployment sets it). */}}
{{- define "nodecluster-operator.args" -}}
- run
- --liveness
- http://0.0.0.0:{{ .Values.operator.healthPort }}/healthz
{{- if .Values.metrics.enabled }}
- --metrics-address
- 0.0.0.0:{{ .Values.metrics.port }}
{{- end }}
{{- if .Values.receivers.enabled }}
- --receiver-address
- 0.0.0.0:{{ .Values.receivers.port }}
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
{{- if .Values.leaderElection.enabled }}
- --leader-elect
- --lease-name
- {{ include "nodecluster-operator.leaseName" . }}
- --lease-duration
- {{ .Values.leaderElection.leaseDurationSeconds | quote }}
- --renew-deadline
- {{ .Values.leaderElection.renewDeadlineSeconds | quote }}
- --retry-period
- {{ .Values.leaderElection.retryPeriodSeconds | quote }}
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

{{/* The receivers' Service: where Alertmanager (or an Ingress) sends its requests. */}}
{{- define "nodecluster-operator.receiversServiceName" -}}
{{- printf "%s-receivers" (include "nodecluster-operator.fullname" .) -}}
{{- end -}}

{{/* The leader Lease's name: leaderElection.leaseName, or the release's full name. */}}
{{- define "nodecluster-operator.leaseName" -}}
{{- default (include "nodecluster-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/*
Refuse values that would run two operators unfenced, or a Lease whose timings cannot work
(the operator would refuse them too, but only once its pods crash-loop).
*/}}
{{- define "nodecluster-operator.checkLeaderElection" -}}
{{- $le := .Values.leaderElection -}}
{{- if and (not $le.enabled) (gt (int .Values.replicaCount) 1) -}}
{{- fail (printf "replicaCount %v needs leaderElection.enabled: without the Lease every replica would create, delete and write the same objects. Set leaderElection.enabled=true, or replicaCount to 0 or 1." .Values.replicaCount) -}}
{{- end -}}
{{- if and $le.enabled (not (and (lt (float64 $le.retryPeriodSeconds) (float64 $le.renewDeadlineSeconds)) (lt (float64 $le.renewDeadlineSeconds) (float64 $le.leaseDurationSeconds)))) -}}
{{- fail (printf "leaderElection needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds (got %v, %v, %v)" $le.retryPeriodSeconds $le.renewDeadlineSeconds $le.leaseDurationSeconds) -}}
{{- end -}}
{{- end -}}
