{{/*
Names, labels, images, security contexts and the environment of every component.
Components: gateway, features, materializer, predictor, controller, redis, mlflow,
pipelines, test.
*/}}

{{- define "vroom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name when it contains the chart name; 63 max. */}}
{{- define "vroom.fullname" -}}
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

{{/* The name of one component's resources: <fullname>-<component>, 63 max. */}}
{{- define "vroom.componentName" -}}
{{- $full := include "vroom.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full .component }}
{{- end }}

{{- define "vroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: unique per release (instance) and component. */}}
{{- define "vroom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vroom.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "vroom.labels" -}}
{{ include "vroom.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "vroom.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ include "vroom.chart" .root }}
{{- end }}

{{/* An image of ours: images.<component>, tag defaulting to the appVersion. */}}
{{- define "vroom.image" -}}
{{- $image := index .root.Values.images .component }}
{{- $tag := default .root.Chart.AppVersion $image.tag }}
{{- if eq $tag "latest" }}
{{- fail (printf "images.%s.tag: pin a version, not latest" .component) }}
{{- end }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{/* --- names other resources refer to -------------------------------------------- */}}

{{/* The InferenceService; KServe names its predictor Service <isvc>-predictor. */}}
{{- define "vroom.isvcName" -}}
{{- include "vroom.fullname" . }}
{{- end }}

{{- define "vroom.predictorServiceName" -}}
{{- printf "%s-predictor" (include "vroom.isvcName" .) }}
{{- end }}

{{/* A progressive rollout's candidate: a second InferenceService the controller creates
(vroom_common.registry.candidate_name of the champion's), and its predictor Service. */}}
{{- define "vroom.candidateIsvcName" -}}
{{- printf "%s-candidate" (include "vroom.isvcName" .) }}
{{- end }}

{{- define "vroom.candidatePredictorServiceName" -}}
{{- printf "%s-predictor" (include "vroom.candidateIsvcName" .) }}
{{- end }}

{{- define "vroom.materializeCronJob" -}}
{{- include "vroom.componentName" (dict "root" . "component" "materialize") }}
{{- end }}

{{- define "vroom.pipelineCronJob" -}}
{{- include "vroom.componentName" (dict "root" . "component" "pipeline") }}
{{- end }}

{{- define "vroom.stateClaim" -}}
{{- default (include "vroom.componentName" (dict "root" . "component" "state")) .Values.state.existingClaim }}
{{- end }}

{{- define "vroom.mlflowClaim" -}}
{{- include "vroom.componentName" (dict "root" . "component" "mlflow") }}
{{- end }}

{{- define "vroom.gatewayServiceAccount" -}}
{{- include "vroom.componentName" (dict "root" . "component" "gateway") }}
{{- end }}

{{- define "vroom.controllerServiceAccount" -}}
{{- include "vroom.componentName" (dict "root" . "component" "controller") }}
{{- end }}

{{- define "vroom.rolloutServiceAccount" -}}
{{- include "vroom.componentName" (dict "root" . "component" "rollout") }}
{{- end }}

{{/* Pods that need no API access: no token is mounted. */}}
{{- define "vroom.workloadServiceAccount" -}}
{{- include "vroom.componentName" (dict "root" . "component" "workload") }}
{{- end }}

{{- define "vroom.databaseSecret" -}}
{{- default (include "vroom.componentName" (dict "root" . "component" "database")) .Values.database.existingSecret.name }}
{{- end }}

{{/* The Secret of API keys the gateway mounts (auth.existingSecret, or the one the
chart creates from auth.keys); empty when no key is configured. */}}
{{- define "vroom.apiKeysSecret" -}}
{{- if .Values.auth.enabled }}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if .Values.auth.keys }}
{{- include "vroom.componentName" (dict "root" . "component" "api-keys") }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the API keys Secret is mounted, as a directory (VROOM_API_KEYS_FILE). */}}
{{- define "vroom.apiKeysDir" -}}/var/run/secrets/vroom/api-keys{{- end }}

{{- define "vroom.sqlite" -}}
{{- if not (or .Values.database.url .Values.database.existingSecret.name) }}true{{- end }}
{{- end }}

{{- define "vroom.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s:%d/0" (include "vroom.componentName" (dict "root" . "component" "redis")) (int .Values.redis.port) }}
{{- else }}
{{- .Values.redis.external.url }}
{{- end }}
{{- end }}

{{- define "vroom.mlflowUri" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s:%d" (include "vroom.componentName" (dict "root" . "component" "mlflow")) (int .Values.mlflow.port) }}
{{- else }}
{{- .Values.mlflow.external.uri }}
{{- end }}
{{- end }}

{{/* The MLflow server stores its artifacts here on its PVC. */}}
{{- define "vroom.mlflowArtifactsSubpath" -}}artifacts{{- end }}

{{- define "vroom.storageUriMap" -}}
{{- $map := dict }}
{{- if .Values.mlflow.enabled }}
{{- $_ := set $map "mlflow-artifacts:/" (printf "pvc://%s/%s/" (include "vroom.mlflowClaim" .) (include "vroom.mlflowArtifactsSubpath" .)) }}
{{- end }}
{{- toJson (merge (deepCopy .Values.predictor.storageUriMap) $map) }}
{{- end }}

{{- define "vroom.initialStorageUri" -}}
{{- if .Values.predictor.initialStorageUri }}
{{- .Values.predictor.initialStorageUri }}
{{- else }}
{{- printf "pvc://%s/%s/" (include "vroom.mlflowClaim" .) (include "vroom.mlflowArtifactsSubpath" .) }}
{{- end }}
{{- end }}

{{/* Combinations the schema cannot express. */}}
{{- define "vroom.validate" -}}
{{- if and (include "vroom.sqlite" .) (or (gt (int .Values.gateway.replicas) 1) .Values.gateway.autoscaling.enabled) }}
{{- fail "gateway: more than one replica (or autoscaling) needs database.url or database.existingSecret; SQLite has a single writer" }}
{{- end }}
{{- if and .Values.database.url .Values.database.existingSecret.name }}
{{- fail "database: set url or existingSecret.name, not both" }}
{{- end }}
{{- if and (not .Values.redis.enabled) (not .Values.redis.external.url) }}
{{- fail "redis.external.url is required when redis.enabled is false" }}
{{- end }}
{{- if and (not .Values.mlflow.enabled) (not .Values.mlflow.external.uri) }}
{{- fail "mlflow.external.uri is required when mlflow.enabled is false" }}
{{- end }}
{{- if and (not .Values.mlflow.enabled) (not .Values.predictor.initialStorageUri) }}
{{- fail "predictor.initialStorageUri is required when mlflow.enabled is false" }}
{{- end }}
{{- $previous := 0 }}
{{- range $share := .Values.rollout.steps }}
{{- if le (int $share) $previous }}
{{- fail (printf "rollout.steps: %s must increase strictly (canary shares in percent, each 1..99, e.g. [10, 50])" (toJson $.Values.rollout.steps)) }}
{{- end }}
{{- $previous = int $share }}
{{- end }}
{{- include "vroom.validate.edge" . }}
{{- if .Values.controller.enabled }}
{{- $candidate := include "vroom.candidatePredictorServiceName" . }}
{{- if gt (len $candidate) 63 }}
{{- fail (printf "controller: the candidate's predictor Service %s would be %d characters (over 63); shorten the release name or fullnameOverride to at most 43" $candidate (len $candidate)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The gateway's exposure, browser and authentication values. */}}
{{- define "vroom.validate.edge" -}}
{{- if and .Values.ingress.enabled .Values.httpRoute.enabled }}
{{- fail "ingress.enabled and httpRoute.enabled: pick one way to expose the gateway (an Ingress or a Gateway API HTTPRoute), not both" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host is required when ingress.enabled is true (e.g. vroom.example.com)" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.parentRefs is required when httpRoute.enabled is true: the Gateway (and its HTTPS listener as sectionName) the route attaches to" }}
{{- end }}
{{- if and .Values.gateway.cors.allowCredentials (has "*" .Values.gateway.cors.origins) }}
{{- fail "gateway.cors: origin \"*\" cannot be combined with allowCredentials true (browsers reject it and the gateway refuses it); list the origins instead" }}
{{- end }}
{{- if .Values.auth.enabled }}
{{- if and .Values.auth.existingSecret .Values.auth.keys }}
{{- fail "auth: set existingSecret or keys, not both" }}
{{- end }}
{{- if not (or .Values.auth.existingSecret .Values.auth.keys .Values.auth.oidc.issuer) }}
{{- fail "auth.enabled is true but no credential is configured: set auth.existingSecret (a Secret whose keys each hold one API key), auth.keys, or auth.oidc.issuer" }}
{{- end }}
{{- end }}
{{- end }}

{{/* How promotions reach users. Without the controller nothing would advance a
progressive rollout, so every component is told "immediate" instead. */}}
{{- define "vroom.rolloutStrategy" -}}
{{- if .Values.controller.enabled }}{{ .Values.rollout.strategy }}{{ else }}immediate{{ end }}
{{- end }}

{{/* The canary shares as VROOM_ROLLOUT_STEPS reads them: "10,50". */}}
{{- define "vroom.rolloutSteps" -}}
{{- $steps := list }}
{{- range .Values.rollout.steps }}{{ $steps = append $steps (int . | toString) }}{{ end }}
{{- join "," $steps }}
{{- end }}

{{/* --- pods ------------------------------------------------------------------ */}}

{{- define "vroom.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vroom.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vroom.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Writable scratch space: /tmp (also HOME and caches of the libraries). */}}
{{- define "vroom.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 512Mi
{{- end }}

{{- define "vroom.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{- define "vroom.stateVolume" -}}
- name: state
  persistentVolumeClaim:
    claimName: {{ include "vroom.stateClaim" . }}
{{- end }}

{{- define "vroom.stateMount" -}}
- name: state
  mountPath: /var/lib/vroom
{{- end }}

{{/* The API keys Secret, read-only and as a whole directory: no subPath, so kubelet
brings every change of the Secret to the pod (the gateway re-reads the directory). */}}
{{- define "vroom.apiKeysVolume" -}}
{{- with include "vroom.apiKeysSecret" . }}
- name: api-keys
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "vroom.apiKeysMount" -}}
{{- if include "vroom.apiKeysSecret" . }}
- name: api-keys
  mountPath: {{ include "vroom.apiKeysDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* --- environment (names are vroom_common.settings.Settings variables) ---------- */}}

{{/* Every Python process: logs, bind address, scratch HOME. */}}
{{- define "vroom.env.base" -}}
- name: VROOM_HOST
  value: "0.0.0.0"
- name: VROOM_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: VROOM_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{- define "vroom.env.redis" -}}
- name: SERVING_REDIS_URL
  value: {{ include "vroom.redisUrl" . | quote }}
{{- end }}

{{- define "vroom.env.mlflow" -}}
- name: SERVING_MLFLOW_URI
  value: {{ include "vroom.mlflowUri" . | quote }}
{{- end }}

{{- define "vroom.env.model" -}}
- name: SERVING_MODEL_NAME
  value: {{ include "vroom.modelName" . | quote }}
{{- end }}

{{/* The registered model: the Settings default (the services' one source). */}}
{{- define "vroom.modelName" -}}vroom-forecast{{- end }}

{{/* State on the shared volume: offline store, Feast registry (and SQLite). */}}
{{- define "vroom.env.state" -}}
- name: VROOM_STATE_DIR
  value: /var/lib/vroom
- name: SERVING_OFFLINE_STORE_PATH
  value: /var/lib/vroom/offline/vehicle_features.parquet
- name: VROOM_FEAST_REPO
  value: /app/feature_repo
{{- end }}

{{- define "vroom.env.database" -}}
{{- if include "vroom.sqlite" . }}
- name: SERVING_DB_PATH
  value: /var/lib/vroom/vroom.db
{{- else }}
- name: SERVING_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "vroom.databaseSecret" . }}
      key: {{ .Values.database.existingSecret.key }}
{{- end }}
{{- end }}

{{- define "vroom.env.namespace" -}}
- name: VROOM_KUBE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/* Promotion rolls the champion out by patching the InferenceService. */}}
{{- define "vroom.env.rollout" -}}
- name: VROOM_ROLLOUT_BACKEND
  value: kubernetes
- name: VROOM_INFERENCE_SERVICE_NAME
  value: {{ include "vroom.isvcName" . | quote }}
- name: VROOM_STORAGE_URI_MAP
  value: {{ include "vroom.storageUriMap" . | quote }}
- name: VROOM_ROLLOUT_WAIT_READY
  value: {{ .Values.predictor.rolloutWaitReady | quote }}
{{- include "vroom.env.namespace" . | nindent 0 }}
{{- end }}

{{/* The progressive-delivery policy (docs/rollouts.md). Whoever starts a rollout (the
pipeline Jobs, the gateway's POST /rollout), judges it (the controller) or splits and
mirrors its traffic (the gateway) reads the same numbers; how the gateway calls the
candidate is in vroom.env.candidateArm. */}}
{{- define "vroom.env.progressive" -}}
{{- $r := .Values.rollout }}
- name: VROOM_ROLLOUT_STRATEGY
  value: {{ include "vroom.rolloutStrategy" . | quote }}
- name: VROOM_ROLLOUT_STEPS
  value: {{ include "vroom.rolloutSteps" . | quote }}
- name: VROOM_ROLLOUT_SHADOW_S
  value: {{ $r.shadowSeconds | toString | quote }}
- name: VROOM_ROLLOUT_STEP_S
  value: {{ $r.stepSeconds | toString | quote }}
- name: VROOM_ROLLOUT_MIN_REQUESTS
  value: {{ $r.minRequests | int | toString | quote }}
- name: VROOM_ROLLOUT_MAX_ERROR_RATE
  value: {{ $r.maxErrorRate | toString | quote }}
- name: VROOM_ROLLOUT_MAX_P99_RATIO
  value: {{ $r.maxP99Ratio | toString | quote }}
- name: VROOM_ROLLOUT_P99_SLACK_MS
  value: {{ $r.p99SlackMs | toString | quote }}
- name: VROOM_ROLLOUT_MAX_DISAGREEMENT
  value: {{ $r.maxDisagreement | toString | quote }}
- name: VROOM_ROLLOUT_TIMEOUT_S
  value: {{ $r.timeoutSeconds | toString | quote }}
{{- end }}

{{/* The gateway's browser and request limits (gateway.cors, gateway.limits). */}}
{{- define "vroom.env.gatewayHttp" -}}
{{- $g := .Values.gateway }}
- name: VROOM_CORS_ORIGINS
  value: {{ join "," $g.cors.origins | quote }}
- name: VROOM_CORS_ALLOW_CREDENTIALS
  value: {{ $g.cors.allowCredentials | toString | quote }}
- name: VROOM_MAX_BODY_BYTES
  value: {{ $g.limits.maxBodyBytes | int | toString | quote }}
- name: VROOM_RATE_LIMIT_COSTLY
  value: {{ $g.limits.rateLimitCostly | quote }}
- name: VROOM_RATE_LIMIT_BENCHMARK
  value: {{ $g.limits.rateLimitBenchmark | quote }}
- name: VROOM_DRIFT_ALERT_PSI
  value: {{ .Values.monitoring.rules.driftPsi | toString | quote }}
- name: VROOM_PREDICTION_LOG_SAMPLE
  value: {{ .Values.predictionLog.sample | toString | quote }}
{{- with $g.forwardedAllowIps }}
- name: VROOM_FORWARDED_ALLOW_IPS
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The gateway's authentication (auth.*): nothing while auth.enabled is false. */}}
{{- define "vroom.env.auth" -}}
{{- if .Values.auth.enabled }}
{{- if include "vroom.apiKeysSecret" . }}
- name: VROOM_API_KEYS_FILE
  value: {{ include "vroom.apiKeysDir" . | quote }}
{{- end }}
- name: VROOM_AUTH_READS
  value: {{ .Values.auth.protectReads | toString | quote }}
{{- with .Values.auth.oidc.issuer }}
- name: VROOM_OIDC_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.auth.oidc.audience }}
- name: VROOM_OIDC_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.auth.oidc.jwksUrl }}
- name: VROOM_OIDC_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The champion's and the candidate's predictors, through their KServe Services
(Standard mode: <isvc>-predictor, port 80 -> the first container port, REST, and the
gRPC port on its own number). */}}
{{- define "vroom.env.predictors" -}}
- name: VROOM_PREDICTOR_GRPC_TARGET
  value: {{ printf "%s:%d" (include "vroom.predictorServiceName" .) (int .Values.predictor.grpcPort) | quote }}
- name: VROOM_PREDICTOR_URL
  value: {{ printf "http://%s" (include "vroom.predictorServiceName" .) | quote }}
- name: VROOM_CANDIDATE_PREDICTOR_URL
  value: {{ printf "http://%s" (include "vroom.candidatePredictorServiceName" .) | quote }}
{{- end }}

{{/* How the gateway calls the candidate: its gRPC Service, the deadline past which the
champion answers instead, and the bound on mirrored calls in flight. */}}
{{- define "vroom.env.candidateArm" -}}
{{- $r := .Values.rollout }}
- name: VROOM_CANDIDATE_PREDICTOR_GRPC_TARGET
  value: {{ printf "%s:%d" (include "vroom.candidatePredictorServiceName" .) (int .Values.predictor.grpcPort) | quote }}
- name: VROOM_ROLLOUT_CANDIDATE_TIMEOUT_S
  value: {{ $r.candidateTimeoutSeconds | toString | quote }}
- name: VROOM_ROLLOUT_MIRROR_MAX_INFLIGHT
  value: {{ $r.mirrorMaxInflight | int | toString | quote }}
{{- end }}
