{{/* Container ports are fixed; Services map their own ports onto them. */}}
{{- define "uptake.grpcPort" -}}50051{{- end }}
{{- define "uptake.metricsPort" -}}9464{{- end }}

{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "uptake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix; leaves room for the longest suffix the chart appends. */}}
{{- define "uptake.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "uptake.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the release's pods; call with (dict "ctx" $ "component" "ingest"). */}}
{{- define "uptake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "uptake.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* Labels of every object; call with (dict "ctx" $ "component" "ingest"). */}}
{{- define "uptake.labels" -}}
helm.sh/chart: {{ include "uptake.chart" .ctx }}
{{ include "uptake.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: uptake
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "uptake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "uptake.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "uptake.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret the chart creates for the credentials given inline. */}}
{{- define "uptake.secretName" -}}
{{- include "uptake.fullname" . }}
{{- end }}

{{/*
Credentials, as JSON {"items": [{env, path, secret, key, inline, value}]}: each
configured one becomes a file under /etc/uptake/secrets named by its env var.
An existingSecret wins over a value given inline. The pseudonym key and the
API keys are required; rendering fails naming both ways to give each.
*/}}
{{- define "uptake.credentials" -}}
{{- $v := .Values }}
{{- if not (or $v.pseudonymKey.value $v.pseudonymKey.existingSecret.name) }}
{{- fail "pseudonymKey: set pseudonymKey.existingSecret.name (a Secret you manage) or pseudonymKey.value; the HMAC key that pseudonymises user ids is required" }}
{{- end }}
{{- if not (or $v.apiKeys.value $v.apiKeys.existingSecret.name) }}
{{- fail "apiKeys: set apiKeys.existingSecret.name (a Secret you manage) or apiKeys.value; the ingestion service refuses to start without an API keys file (create keys with uptake-server keys create)" }}
{{- end }}
{{- $specs := list
  (dict "cfg" $v.pseudonymKey "value" $v.pseudonymKey.value "path" "pseudonym-key" "env" "UPTAKE_PSEUDONYM_KEY_FILE")
  (dict "cfg" $v.store "value" $v.store.password "path" "store-password" "env" "UPTAKE_STORE_PASSWORD_FILE")
  (dict "cfg" $v.apiKeys "value" $v.apiKeys.value "path" "api-keys.yaml" "env" "UPTAKE_API_KEYS_FILE") }}
{{- $items := list }}
{{- range $specs }}
{{- if .cfg.existingSecret.name }}
{{- $items = append $items (dict "env" .env "path" .path "secret" .cfg.existingSecret.name "key" .cfg.existingSecret.key "inline" false) }}
{{- else if .value }}
{{- $items = append $items (dict "env" .env "path" .path "secret" (include "uptake.secretName" $) "key" .path "inline" true "value" .value) }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $items) }}
{{- end }}

{{/* Secret data for the inline credentials among a list of credentials. */}}
{{- define "uptake.secretData" -}}
{{- range . }}
{{- if .inline }}
{{ .key }}: {{ .value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "uptake.storeDsn" -}}
{{- $dsn := required "store.dsn is required: the ClickHouse HTTP(S) URL without password, e.g. http://uptake@clickhouse.db.svc:8123/uptake" .Values.store.dsn }}
{{- if contains ":" (urlParse $dsn).userinfo }}
{{- fail "store.dsn must not contain the password (it would sit in the pod spec): give it in store.password or store.existingSecret" }}
{{- end }}
{{- $dsn }}
{{- end }}

{{/*
Environment, volumes and mounts shared by every role; call with
(dict "ctx" $ "secrets" <credentials> "registry" <mount the tool registry>).
*/}}
{{- define "uptake.env" -}}
{{- $v := .ctx.Values }}
- name: UPTAKE_STORE_DSN
  value: {{ include "uptake.storeDsn" .ctx | quote }}
{{- with $v.store.cluster }}
- name: UPTAKE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- range .secrets }}
- name: {{ .env }}
  value: {{ printf "/etc/uptake/secrets/%s" .path | quote }}
{{- end }}
{{- if and .registry $v.registry }}
- name: UPTAKE_REGISTRY_FILE
  value: /etc/uptake/registry/registry.yaml
{{- end }}
- name: UPTAKE_DATA_DIR
  value: /tmp/uptake
- name: UPTAKE_LOG_FORMAT
  value: json
- name: UPTAKE_LOG_LEVEL
  value: {{ $v.config.logLevel | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
OpenTelemetry trace export of the ingestion pods, when tracing.enabled. Kubernetes
expands $(K8S_POD_NAME) in OTEL_RESOURCE_ATTRIBUTES from the variable defined before it.
*/}}
{{- define "uptake.tracingEnv" -}}
{{- $t := .Values.tracing }}
{{- if $t.enabled }}
{{- $endpoint := required "tracing.endpoint is required when tracing.enabled: the OTLP/gRPC URL of a collector, e.g. http://otel-collector.observability.svc:4317" $t.endpoint }}
{{- $attributes := list (printf "k8s.namespace.name=%s" .Release.Namespace) "k8s.pod.name=$(K8S_POD_NAME)" }}
{{- range $key, $value := $t.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) }}
{{- end }}
- name: UPTAKE_TRACING
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $endpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $t.serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | toString | quote }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- end }}
{{- end }}

{{- define "uptake.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- with .secrets }}
- name: secrets
  projected:
    defaultMode: 0440
    sources:
    {{- range . }}
      - secret:
          name: {{ .secret }}
          items:
            - key: {{ .key }}
              path: {{ .path }}
    {{- end }}
{{- end }}
{{- if and .registry .ctx.Values.registry }}
- name: registry
  configMap:
    name: {{ include "uptake.fullname" .ctx }}-registry
{{- end }}
{{- end }}

{{- define "uptake.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .secrets }}
- name: secrets
  mountPath: /etc/uptake/secrets
  readOnly: true
{{- end }}
{{- if and .registry .ctx.Values.registry }}
- name: registry
  mountPath: /etc/uptake/registry
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod spec fields shared by every Uptake pod. */}}
{{- define "uptake.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Scheduling fields; call with the role's values (ingest or kpi). */}}
{{- define "uptake.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Checksums that roll the pods when their configuration changes; call with (dict "ctx" $ "secrets" <credentials>). */}}
{{- define "uptake.configChecksums" -}}
checksum/secret: {{ include "uptake.secretData" .secrets | sha256sum }}
checksum/registry: {{ toYaml .ctx.Values.registry | sha256sum }}
{{- end }}
