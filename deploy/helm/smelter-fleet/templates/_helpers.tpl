{{/* Names and labels shared by every template. */}}
{{- define "smelter-fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "smelter-fleet.fullname" -}}
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

{{- define "smelter-fleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "smelter-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "controller"). */}}
{{- define "smelter-fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smelter-fleet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "smelter-fleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Secret and key holding the Redis URL. */}}
{{- define "smelter-fleet.redisSecretName" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecret }}{{ else }}{{ include "smelter-fleet.fullname" . }}-redis-url{{ end }}
{{- end }}
{{- define "smelter-fleet.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecretKey }}{{ else }}url{{ end }}
{{- end }}

{{/* Secret and key holding the fleet link secret. */}}
{{- define "smelter-fleet.linkSecretName" -}}
{{- if .Values.linkSecret.existingSecret }}{{ .Values.linkSecret.existingSecret }}{{ else }}{{ include "smelter-fleet.fullname" . }}-link{{ end }}
{{- end }}
{{- define "smelter-fleet.linkSecretKey" -}}
{{- if .Values.linkSecret.existingSecret }}{{ .Values.linkSecret.existingSecretKey }}{{ else }}secret{{ end }}
{{- end }}

{{/* A value kept across upgrades: the given one, else the one already in the Secret, else a new random one. */}}
{{- define "smelter-fleet.keptRandom" -}}
{{- $given := .given }}
{{- if $given }}{{ $given }}{{ else }}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing (index $existing.data .key) }}{{ index $existing.data .key | b64dec }}{{ else }}{{ randAlphaNum 48 }}{{ end }}
{{- end }}
{{- end }}

{{/* The allocator Service's in-cluster address (host:port) for callers. */}}
{{- define "smelter-fleet.allocatorAddress" -}}
{{- printf "%s-allocator.%s.svc:%d" (include "smelter-fleet.fullname" .) .Release.Namespace (int .Values.allocator.service.port) }}
{{- end }}

{{/* Where sidecars link: the caller port, or the link port when callers use TLS. */}}
{{- define "smelter-fleet.linkAddress" -}}
{{- if .Values.allocator.tls.secretName }}
{{- printf "%s-allocator.%s.svc:%d" (include "smelter-fleet.fullname" .) .Release.Namespace (int .Values.allocator.linkPort) }}
{{- else }}
{{- include "smelter-fleet.allocatorAddress" . }}
{{- end }}
{{- end }}

{{/* Secret and key holding the allocators' caller token list. */}}
{{- define "smelter-fleet.tokensSecretName" -}}
{{- if .Values.allocator.auth.existingSecret }}{{ .Values.allocator.auth.existingSecret }}{{ else }}{{ include "smelter-fleet.fullname" . }}-allocator-tokens{{ end }}
{{- end }}
{{- define "smelter-fleet.tokensSecretKey" -}}
{{- if .Values.allocator.auth.existingSecret }}{{ .Values.allocator.auth.existingSecretKey }}{{ else }}tokens{{ end }}
{{- end }}

{{/* Env of every process that opens the store. */}}
{{- define "smelter-fleet.storeEnv" -}}
- name: SMELTER_FLEET_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "smelter-fleet.redisSecretName" . }}
      key: {{ include "smelter-fleet.redisSecretKey" . }}
{{- end }}

{{/* Env of the processes that issue (controller) or check (allocators) link tokens. */}}
{{- define "smelter-fleet.linkSecretEnv" -}}
- name: SMELTER_FLEET_LINK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "smelter-fleet.linkSecretName" . }}
      key: {{ include "smelter-fleet.linkSecretKey" . }}
{{- end }}

{{- define "smelter-fleet.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "redis: set redis.url (or redis.existingSecret) to your Redis, or redis.enabled=true for a try-out Redis" }}
{{- end }}
{{- if and .Values.allocator.auth.insecure (or .Values.allocator.auth.tokens .Values.allocator.auth.existingSecret) }}
{{- fail "allocator.auth: insecure serves anyone without a token; unset allocator.auth.tokens / existingSecret, or insecure" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redis: redis.enabled deploys its own Redis; unset redis.url / redis.existingSecret, or disable it" }}
{{- end }}
{{- end }}
