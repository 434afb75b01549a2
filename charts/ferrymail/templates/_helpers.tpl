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

{{/*
An existing object's content as YAML ("{}" when there is none, and always under
`helm template`, which has no cluster): what the chart generated on install and keeps on
upgrades. Call with (dict "root" $ "name" "<Secret name>").
*/}}
{{- define "ferrymail.existingSecret" -}}
{{- lookup "v1" "Secret" .root.Release.Namespace .name | toYaml }}
{{- end }}

{{/* Scheme of the endpoints between the roles. */}}
{{- define "ferrymail.grpcScheme" -}}
{{- if .Values.clusterTls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The identities that get a certificate, as a YAML list of {key, role}: the roles that run,
and `admin` for the `ferrymail queue` CLI (in the modes where the chart issues them).
*/}}
{{- define "ferrymail.identities" -}}
{{- $out := list }}
{{- range $key, $role := include "ferrymail.roles" . | fromYaml }}
{{- if or (ne $key "operator") $.Values.operator.enabled }}
{{- $out = append $out (dict "key" $key "role" $role.name) }}
{{- end }}
{{- end }}
{{- if and .Values.clusterTls.admin.enabled (ne .Values.clusterTls.mode "secrets") }}
{{- $out = append $out (dict "key" "admin" "role" "admin") }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
DNS names of an identity's certificate: <role>.<domain>, which makes it that role (the name
clients verify), and for the roles serving gRPC their Service's names as well.
Call with (dict "root" $ "role" "queue-scheduler").
*/}}
{{- define "ferrymail.identityDnsNames" -}}
{{- $names := list (printf "%s.%s" .role .root.Values.clusterTls.domain) }}
{{- if has .role (list "queue-scheduler" "directory-proxy") }}
{{- $service := printf "%s-%s" (include "ferrymail.fullname" .root) .role }}
{{- $ns := .root.Release.Namespace }}
{{- $names = concat $names (list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns)) }}
{{- end }}
{{- toYaml $names }}
{{- end }}

{{/*
The Secret holding an identity (tls.crt, tls.key, ca.crt): the one named in
clusterTls.secrets.<key> in mode `secrets`, else <fullname>-<role>-mtls.
Call with (dict "root" $ "key" "queueScheduler" "role" "queue-scheduler").
*/}}
{{- define "ferrymail.identitySecret" -}}
{{- $named := "" }}
{{- if eq .root.Values.clusterTls.mode "secrets" }}
{{- $named = index .root.Values.clusterTls.secrets .key | default "" }}
{{- end }}
{{- $named | default (printf "%s-%s-mtls" (include "ferrymail.fullname" .root) .role) }}
{{- end }}

{{/* The CA's Secret, in the modes where the chart creates a CA. */}}
{{- define "ferrymail.clusterCaSecret" -}}
{{ include "ferrymail.fullname" . }}-cluster-ca
{{- end }}

{{/* The Secret holding cluster.cache-key, and its key. */}}
{{- define "ferrymail.cacheKeySecret" -}}
{{- .Values.cacheKey.existingSecret | default (printf "%s-cache-key" (include "ferrymail.fullname" .)) }}
{{- end }}
{{- define "ferrymail.cacheKeySecretKey" -}}
{{- if .Values.cacheKey.existingSecret }}{{ .Values.cacheKey.secretKey }}{{ else }}cache-key{{ end }}
{{- end }}
