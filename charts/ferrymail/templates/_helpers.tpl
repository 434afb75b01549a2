{{/* Chart name. */}}
{{- define "ferrymail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; role names are appended to it, so keep room for them. */}}
{{- define "ferrymail.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else if contains (include "ferrymail.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "ferrymail.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The roles: values key → role name, command, whether it serves gRPC. */}}
{{- define "ferrymail.roles" -}}
smtpIngress: {name: smtp-ingress, grpc: false}
queueScheduler: {name: queue-scheduler, grpc: true}
directoryProxy: {name: directory-proxy, grpc: true}
operator: {name: operator, grpc: false}
{{- end }}

{{- define "ferrymail.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "ferrymail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferrymail
{{- end }}

{{/* Selector labels of one role: call with (dict "root" $ "role" "smtp-ingress"). */}}
{{- define "ferrymail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferrymail.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "ferrymail.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "ferrymail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ include "ferrymail.fullname" . }}{{ else }}default{{ end }}
{{- end }}

{{/* The operator's outputs, mounted by every pod. */}}
{{- define "ferrymail.renderedConfigMap" -}}
{{ include "ferrymail.fullname" . }}-rendered
{{- end }}
{{- define "ferrymail.renderedSecret" -}}
{{ include "ferrymail.fullname" . }}-rendered-secrets
{{- end }}

{{/* Whether the ingress serves implicit TLS (465): only with a certificate. */}}
{{- define "ferrymail.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled }}{{ include "ferrymail.fullname" . }}-tls{{ else }}{{ .Values.tls.secretName }}{{ end }}
{{- end }}
