{{/*
Values written for the original plugin's chart, teleport-plugin-event-handler
(teleport's examples/chart/event-handler), whether its own or those its
configure writes: they carry its storage keys, eventHandler.storagePath or
persistentVolumeClaim, where this chart has persistence.*. "true" or "".
*/}}
{{- define "teleport-event-handler.originalValues" -}}
{{- if or .Values.eventHandler.storagePath .Values.persistentVolumeClaim }}true{{ end }}
{{- end }}

{{/*
The name in names and labels. Given the original's values, it is the
original chart's, so that every object is named as the original named it
for this release: `helm upgrade` of the original's release then patches its
Deployment in place (its selector holds the name and cannot change), which
stops the original before this daemon starts, so that the two never run on
one state, and keeps the claim that holds the state to take over.
*/}}
{{- define "teleport-event-handler.chartName" -}}
{{- if include "teleport-event-handler.originalValues" . }}teleport-plugin-event-handler{{ else }}{{ .Chart.Name }}{{ end }}
{{- end }}

{{/* Names and labels, the usual way. */}}
{{- define "teleport-event-handler.name" -}}
{{- default (include "teleport-event-handler.chartName" .) .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "teleport-event-handler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default (include "teleport-event-handler.chartName" .) .Values.nameOverride }}
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
{{- define "teleport-event-handler.teleportCADir" -}}/etc/teleport-event-handler/teleport-tls-ca{{- end }}

{{/*
The key of the identity file in teleport.identitySecretName: given, or
identity (configure writes it so), or for the original's values auth_id, the
original chart's default.
*/}}
{{- define "teleport-event-handler.identitySecretPath" -}}
{{- .Values.teleport.identitySecretPath | default (ternary "auth_id" "identity" (eq (include "teleport-event-handler.originalValues" .) "true")) }}
{{- end }}

{{/*
Where the state is, as YAML (enabled, createClaim, claimName, volumeName,
mountPath, size, storageClassName), from persistence.* and the original
chart's keys: eventHandler.storagePath is persistence.mountPath, and
persistentVolumeClaim.* picks the claim as the original did, so that the
daemon finds the original's state there and takes it over. An old key and
its new one that disagree fail, naming both.
*/}}
{{- define "teleport-event-handler.storage" -}}
{{- $new := .Values.persistence }}
{{- $old := .Values.persistentVolumeClaim | default dict }}
{{- $disagree := "%s (%v, the original chart's key) and %s (%v) disagree: give one of them" }}
{{- $fullname := include "teleport-event-handler.fullname" . }}

{{- $mountPath := $new.mountPath }}
{{- with .Values.eventHandler.storagePath }}
{{- /* The original's configure writes ./storage. The kubelet mounts a
     relative path from /, where the original, whose image sets no working
     directory, resolved it too: its state is in /storage. */}}
{{- $path := printf "/%s" . | clean }}
{{- if and $new.mountPath (ne (clean $new.mountPath) $path) }}
{{- fail (printf $disagree "eventHandler.storagePath" (toJson .) "persistence.mountPath" (toJson $new.mountPath)) }}
{{- end }}
{{- $mountPath = $path }}
{{- end }}

{{- $claim := $new.existingClaim }}
{{- if index $old "enabled" }}
{{- /* The original made a claim named after its full name (this chart's
     for the original's values: see chartName) and then ignored
     existingClaim: its state is in that claim. */}}
{{- if not $new.enabled }}
{{- fail (printf $disagree "persistentVolumeClaim.enabled" true "persistence.enabled" false) }}
{{- end }}
{{- if $new.existingClaim }}
{{- fail (printf $disagree "persistentVolumeClaim.enabled" (printf "true: the claim %s" $fullname) "persistence.existingClaim" (toJson $new.existingClaim)) }}
{{- end }}
{{- else if index $old "existingClaim" }}
{{- $oldClaim := index $old "existingClaim" }}
{{- if not $new.enabled }}
{{- fail (printf $disagree "persistentVolumeClaim.existingClaim" (toJson $oldClaim) "persistence.enabled" false) }}
{{- end }}
{{- if and $new.existingClaim (ne $new.existingClaim $oldClaim) }}
{{- fail (printf $disagree "persistentVolumeClaim.existingClaim" (toJson $oldClaim) "persistence.existingClaim" (toJson $new.existingClaim)) }}
{{- end }}
{{- $claim = $oldClaim }}
{{- end }}
{{- /* persistentVolumeClaim.enabled false without existingClaim, the
     original's default, leaves persistence.* in charge: the original kept
     its state in the container then, so there is none to take over, and
     turning the claim off because a copied default said so would make every
     new pod send everything again. */}}

{{- $size := $new.size }}
{{- with index $old "size" }}
{{- if and $new.size (ne (toString $new.size) (toString .)) }}
{{- fail (printf $disagree "persistentVolumeClaim.size" (toJson .) "persistence.size" (toJson $new.size)) }}
{{- end }}
{{- $size = . }}
{{- end }}
{{- $class := $new.storageClassName }}
{{- with index $old "storageClassName" }}
{{- if and $new.storageClassName (ne $new.storageClassName .) }}
{{- fail (printf $disagree "persistentVolumeClaim.storageClassName" (toJson .) "persistence.storageClassName" (toJson $new.storageClassName)) }}
{{- end }}
{{- $class = . }}
{{- end }}
enabled: {{ $new.enabled }}
createClaim: {{ and $new.enabled (not $claim) }}
claimName: {{ $claim | default $fullname | toJson }}
volumeName: {{ index $old "volumeName" | default "storage" | toJson }}
mountPath: {{ $mountPath | default "/var/lib/teleport-event-handler" | toJson }}
size: {{ $size | default "1Gi" | toJson }}
storageClassName: {{ $class | toJson }}
{{- end }}

{{/*
The original chart's keys that this chart cannot honour: rather than deploy
without them, rendering fails, naming each and what to give instead.
*/}}
{{- define "teleport-event-handler.checkOriginalValues" -}}
{{- $v := .Values }}
{{- $errs := "" }}
{{- if index (index $v "tbot" | default dict) "enabled" }}
{{- $errs = printf "%s\n- tbot.enabled: this chart runs no tbot; run the tbot chart beside it and give its output Secret as teleport.identitySecretName (the original read %s-tbot-out) and teleport.identitySecretPath: identity" $errs .Release.Name }}
{{- end }}
{{- if index (index $v "crd" | default dict) "create" }}
{{- $errs = printf "%s\n- crd.create: this chart creates no Teleport resources; create the role and the bot or user with tctl (configure writes the role)" $errs }}
{{- end }}
{{- if index (index $v "certManager" | default dict) "enabled" }}
{{- $errs = printf "%s\n- certManager.enabled: this chart requests no certificate; have cert-manager issue it into a Secret and give fluentd.certificate.secretName, with fluentd.certificate.certPath: tls.crt and fluentd.certificate.keyPath: tls.key" $errs }}
{{- end }}
{{- range $key := list "volumes" "volumeMounts" }}
{{- if index $v $key }}
{{- $errs = printf "%s\n- %s: this chart mounts no extra volumes; the state's claim is persistence.existingClaim (or persistentVolumeClaim.existingClaim)" $errs $key }}
{{- end }}
{{- end }}
{{- range $old, $new := dict "annotations" "podAnnotations" "extraLabels" "podLabels" }}
{{- $given := index $v $old | default dict }}
{{- if index $given "pod" }}
{{- $errs = printf "%s\n- %s.pod: give %s" $errs $old $new }}
{{- end }}
{{- if index $given "deployment" }}
{{- $errs = printf "%s\n- %s.deployment: this chart sets none on the Deployment; %s are on the pod" $errs $old $new }}
{{- end }}
{{- end }}
{{- if contains "gravitational/teleport-plugin-event-handler" $v.image.repository }}
{{- $errs = printf "%s\n- image.repository: %s is the original plugin's image; give this daemon's, built from deploy/Dockerfile" $errs $v.image.repository }}
{{- end }}
{{- with $errs }}
{{- fail (printf "keys of the original chart (teleport-plugin-event-handler) that this chart cannot honour:%s" .) }}
{{- end }}
{{- end }}
