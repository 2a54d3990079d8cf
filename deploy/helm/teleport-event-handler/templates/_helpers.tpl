{{/* Names and labels, the usual way. */}}
{{- define "teleport-event-handler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "teleport-event-handler.fullname" -}}
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

{{- define "teleport-event-handler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "teleport-event-handler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "teleport-event-handler.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "teleport-event-handler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "teleport-event-handler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "teleport-event-handler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port of metrics.addr (host:port, [v6]:port or :port). */}}
{{- define "teleport-event-handler.metricsPort" -}}
{{- splitList ":" .Values.metrics.addr | last }}
{{- end }}

{{/* Where the pod sees its files. */}}
{{- define "teleport-event-handler.configDir" -}}/etc/teleport-event-handler/config{{- end }}
{{- define "teleport-event-handler.identityDir" -}}/etc/teleport-event-handler/teleport{{- end }}
{{- define "teleport-event-handler.certDir" -}}/etc/teleport-event-handler/fluentd{{- end }}
{{- define "teleport-event-handler.sharedKeyDir" -}}/etc/teleport-event-handler/fluentd-shared-key{{- end }}
{{- define "teleport-event-handler.webConfigDir" -}}/etc/teleport-event-handler/web{{- end }}
