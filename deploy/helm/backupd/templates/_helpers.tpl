{{/* Chart name, truncated to 63 characters (a label value). */}}
{{- define "backupd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name, with the chart name unless it contains it. */}}
{{- define "backupd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "backupd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "backupd.labels" -}}
helm.sh/chart: {{ include "backupd.chart" . }}
app.kubernetes.io/name: {{ include "backupd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: backupd
{{- end }}

{{/* Selector labels of a component (agent, controller). */}}
{{- define "backupd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "backupd.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "backupd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "backupd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "backupd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Names of the repository's secrets (created or existing). */}}
{{- define "backupd.passwordSecret" -}}
{{- if .Values.repository.password.existingSecret }}
{{- .Values.repository.password.existingSecret }}
{{- else if .Values.repository.password.value }}
{{- printf "%s-repository" (include "backupd.fullname" .) }}
{{- end }}
{{- end }}

{{- define "backupd.credentialsSecret" -}}
{{- if .Values.repository.credentials.existingSecret }}
{{- .Values.repository.credentials.existingSecret }}
{{- else if .Values.repository.credentials.accessKeyID }}
{{- printf "%s-s3" (include "backupd.fullname" .) }}
{{- end }}
{{- end }}

{{/* Every secret name the agents may get: a YAML list, maybe empty. */}}
{{- define "backupd.secretNames" -}}
{{- $names := list }}
{{- if .Values.repository.create }}
{{- with include "backupd.passwordSecret" . }}{{ $names = append $names . }}{{ end }}
{{- if not .Values.repository.credentials.useServiceAccount }}
{{- with include "backupd.credentialsSecret" . }}{{ $names = append $names . }}{{ end }}
{{- end }}
{{- with .Values.repository.s3.caSecret.name }}{{ $names = append $names . }}{{ end }}
{{- end }}
{{- $names = concat $names .Values.rbac.extraSecretNames | uniq }}
{{- toYaml $names }}
{{- end }}

{{/* Scrape relabelings common to the ServiceMonitor and PodMonitor: the
job the bundled rules select, and the cluster label. */}}
{{- define "backupd.relabelings" -}}
- action: replace
  targetLabel: job
  replacement: {{ .Values.metrics.job | quote }}
{{- with .Values.clusterName }}
- action: replace
  targetLabel: cluster
  replacement: {{ . | quote }}
{{- end }}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
{{- end }}
