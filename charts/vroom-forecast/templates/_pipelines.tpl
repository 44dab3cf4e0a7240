{{/*
The pod template of a pipeline run, shared by the post-install Job and the CronJob
templates the gateway instantiates. Arguments: root, dag (a vroom_common.events DAG
id), args (the vroom_pipelines command line), rollout (true: the pod may patch the
InferenceService).
*/}}

{{- define "vroom.pipelineArgs" -}}
- pipeline
{{- if .Values.pipeline.data.existingClaim }}
- --data-dir
- {{ printf "/data/%s" (trimPrefix "/" .Values.pipeline.data.path) | trimSuffix "/" | quote }}
{{- else }}
- --synthetic
- {{ .Values.pipeline.data.synthetic | quote }}
{{- end }}
{{- end }}

{{/* Blocks until Redis answers and MLflow is healthy, at most `seconds`. */}}
{{- define "vroom.waitForDependencies" -}}
import os, socket, sys, time, urllib.parse, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
def redis():
    url = urllib.parse.urlsplit(os.environ["SERVING_REDIS_URL"])
    with socket.create_connection((url.hostname, url.port or 6379), timeout=3) as sock:
        sock.sendall(b"PING\r\n")
        return bool(sock.recv(64))
def mlflow():
    health = os.environ["SERVING_MLFLOW_URI"].rstrip("/") + "/health"
    with urllib.request.urlopen(health, timeout=3) as answer:
        return answer.status == 200
for name, check in (("redis", redis), ("mlflow", mlflow)):
    while True:
        try:
            if check():
                print(name, "is up", flush=True)
                break
        except OSError as exc:
            print(name, "not yet:", exc, flush=True)
        if time.monotonic() > deadline:
            sys.exit(name + " did not answer in time")
        time.sleep(2)
{{- end }}

{{- define "vroom.pipelinePodTemplate" -}}
{{- $root := .root }}
{{- $c := dict "root" $root "component" "pipelines" }}
metadata:
  labels:
    {{- include "vroom.labels" $c | nindent 4 }}
    vroom-forecast.io/dag-id: {{ .dag }}
spec:
  restartPolicy: Never
  {{- if .rollout }}
  serviceAccountName: {{ include "vroom.rolloutServiceAccount" $root }}
  # The rollout patches the InferenceService with this token.
  automountServiceAccountToken: true
  {{- else }}
  serviceAccountName: {{ include "vroom.workloadServiceAccount" $root }}
  automountServiceAccountToken: false
  {{- end }}
  {{- include "vroom.imagePullSecrets" $root | nindent 2 }}
  securityContext:
    {{- include "vroom.podSecurityContext" $root | nindent 4 }}
  initContainers:
    - name: wait-for-dependencies
      image: {{ include "vroom.image" $c }}
      imagePullPolicy: {{ $root.Values.images.pullPolicy }}
      command: ["python", "-c"]
      args:
        - |
          {{- include "vroom.waitForDependencies" $root | nindent 10 }}
        - {{ $root.Values.pipeline.waitForDependenciesSeconds | quote }}
      env:
        {{- include "vroom.env.redis" $root | nindent 8 }}
        {{- include "vroom.env.mlflow" $root | nindent 8 }}
        - name: HOME
          value: /tmp
      resources:
        requests: {cpu: 10m, memory: 32Mi}
        limits: {cpu: 100m, memory: 128Mi}
      securityContext:
        {{- include "vroom.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "vroom.tmpMount" $root | nindent 8 }}
    # The schema is brought to the newest migration before any step touches it (the
    # services also migrate when they start, under the same lock).
    - name: migrate
      image: {{ include "vroom.image" $c }}
      imagePullPolicy: {{ $root.Values.images.pullPolicy }}
      command: ["python", "-m", "vroom_pipelines", "migrate"]
      env:
        {{- include "vroom.env.base" $root | nindent 8 }}
        {{- include "vroom.env.state" $root | nindent 8 }}
        {{- include "vroom.env.database" $root | nindent 8 }}
      resources:
        requests: {cpu: 50m, memory: 128Mi}
        limits: {cpu: 500m, memory: 512Mi}
      securityContext:
        {{- include "vroom.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "vroom.tmpMount" $root | nindent 8 }}
        {{- include "vroom.stateMount" $root | nindent 8 }}
  containers:
    - name: pipeline
      image: {{ include "vroom.image" $c }}
      imagePullPolicy: {{ $root.Values.images.pullPolicy }}
      command: ["python", "-m", "vroom_pipelines"]
      args:
        {{- .args | nindent 8 }}
      env:
        {{- include "vroom.env.base" $root | nindent 8 }}
        {{- include "vroom.env.redis" $root | nindent 8 }}
        {{- include "vroom.env.mlflow" $root | nindent 8 }}
        {{- include "vroom.env.model" $root | nindent 8 }}
        {{- include "vroom.env.state" $root | nindent 8 }}
        {{- include "vroom.env.database" $root | nindent 8 }}
        - name: VROOM_TRAIN_N_JOBS
          value: {{ $root.Values.pipeline.trainJobs | quote }}
        {{- if .rollout }}
        {{- include "vroom.env.rollout" $root | nindent 8 }}
        # A promotion starts a progressive rollout with the policy the controller and
        # the gateway use.
        {{- include "vroom.env.progressive" $root | nindent 8 }}
        {{- else }}
        - name: VROOM_ROLLOUT_BACKEND
          value: none
        {{- end }}
      resources:
        {{- toYaml $root.Values.pipeline.resources | nindent 8 }}
      securityContext:
        {{- include "vroom.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "vroom.tmpMount" $root | nindent 8 }}
        {{- include "vroom.stateMount" $root | nindent 8 }}
        {{- if $root.Values.pipeline.data.existingClaim }}
        - name: data
          mountPath: /data
          readOnly: true
        {{- end }}
  volumes:
    {{- include "vroom.tmpVolume" $root | nindent 4 }}
    {{- include "vroom.stateVolume" $root | nindent 4 }}
    {{- if $root.Values.pipeline.data.existingClaim }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ $root.Values.pipeline.data.existingClaim }}
        readOnly: true
    {{- end }}
{{- end }}
