{{/* _helpers.tpl — names, labels and the pod pieces shared by the LeaderWorkerSet, StatefulSet and Job. */}}

{{/* Names are cut to 40 characters: LWS makes StatefulSets named <name>-<group> whose pods carry a
     controller-revision-hash label "<statefulset>-<hash>", and a label value may not pass 63. */}}
{{- define "shardserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "shardserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "shardserve.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "shardserve.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The LeaderWorkerSet's name. Not the fullname: LWS makes a headless Service named after itself for its pods' DNS
     names (LWS_LEADER_ADDRESS = <lws>-<group>.<lws>.<namespace>) and makes none when that name is taken, as it was by
     the HTTP Service: a group of several pods then never met (helper-85). */}}
{{- define "shardserve.lwsName" -}}
{{- printf "%s-lws" (include "shardserve.fullname" . | trunc 36 | trimSuffix "-") -}}
{{- end -}}

{{- define "shardserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shardserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "shardserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pods of the replica that serve HTTP and metrics: LWS leaders, or the StatefulSet's pod 0. */}}
{{- define "shardserve.leaderSelectorLabels" -}}
{{ include "shardserve.selectorLabels" . }}
{{- if eq .Values.workload "lws" }}
app.kubernetes.io/component: leader
{{- else }}
statefulset.kubernetes.io/pod-name: {{ include "shardserve.fullname" . }}-0
{{- end }}
{{- end -}}

{{/* Labels of the workload object (LWS or StatefulSet): Kueue reads its queue from there. */}}
{{- define "shardserve.workloadLabels" -}}
{{ include "shardserve.labels" . }}
{{- with .Values.kueueQueueName }}
kueue.x-k8s.io/queue-name: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "shardserve.cacheClaim" -}}
{{- default (printf "%s-cache" (include "shardserve.fullname" .)) .Values.cache.existingClaim -}}
{{- end -}}

{{- define "shardserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pods per replica = tp * pp / gpusPerPod; refuses layouts that do not divide. */}}
{{- define "shardserve.podsPerReplica" -}}
{{- $p := .Values.parallelism -}}
{{- $world := mul $p.tp $p.pp -}}
{{- if ne (mod $world $p.gpusPerPod) (int64 0) -}}
{{- fail (printf "parallelism: tp x pp = %d is not a multiple of gpusPerPod = %d" $world (int64 $p.gpusPerPod)) -}}
{{- end -}}
{{- div $world $p.gpusPerPod -}}
{{- end -}}

{{/* How long a worker pod waits for its leader, which prepares the engine (a download and a build, for a cold
     cache) before it listens: the leader's startup probe budget, at least 600 s, at most a day. */}}
{{- define "shardserve.joinTimeout" -}}
{{- $p := .Values.probes.startup -}}
{{- $t := mul (int $p.periodSeconds) (int $p.failureThreshold) -}}
{{- if lt $t 600 }}{{ $t = 600 }}{{ end -}}
{{- if gt $t 86400 }}{{ $t = 86400 }}{{ end -}}
{{- $t -}}
{{- end -}}

{{/* Checks that span several values (the schema checks each one alone). */}}
{{- define "shardserve.validate" -}}
{{- $pods := include "shardserve.podsPerReplica" . | int -}}
{{- if eq .Values.workload "statefulset" -}}
{{- if ne (int .Values.replicas) 1 -}}
{{- fail "workload=statefulset serves exactly one replica: set replicas: 1 (or use workload=lws)" -}}
{{- end -}}
{{- if .Values.autoscaling.enabled -}}
{{- fail "autoscaling needs workload=lws (the HPA scales whole groups through the LeaderWorkerSet's scale subresource)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas is more than autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and (gt $pods 1) (eq .Values.cache.accessMode "ReadWriteOnce") (not .Values.cache.existingClaim) -}}
{{- fail (printf "a replica spans %d pods (nodes): cache.accessMode must be ReadWriteMany" $pods) -}}
{{- end -}}
{{- end -}}

{{/* Labels and annotations of every serving pod; role is "leader", "worker" or "member". */}}
{{- define "shardserve.podMetadata" -}}
{{- $ := .root -}}
labels:
  {{- include "shardserve.selectorLabels" $ | nindent 2 }}
  app.kubernetes.io/component: {{ .role }}
  {{- with $.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment of `shardserve serve`: every SHARDSERVE_* is the twin of a serve flag. */}}
{{- define "shardserve.serveEnv" -}}
{{- $ := .root -}}
{{- $v := $.Values -}}
- name: SHARDSERVE_MODEL
  value: {{ $v.model.id | quote }}
- name: SHARDSERVE_REVISION
  value: {{ $v.model.revision | quote }}
- name: SHARDSERVE_DTYPE
  value: {{ $v.model.dtype | quote }}
- name: SHARDSERVE_TP
  value: {{ $v.parallelism.tp | quote }}
- name: SHARDSERVE_PP
  value: {{ $v.parallelism.pp | quote }}
- name: SHARDSERVE_GPUS_PER_NODE
  value: {{ $v.parallelism.gpusPerPod | quote }}
- name: SHARDSERVE_DEVICE
  value: {{ $v.device | quote }}
- name: SHARDSERVE_CACHE
  value: {{ $v.cache.mountPath | quote }}
- name: SHARDSERVE_PORT
  value: {{ $v.server.port | quote }}
- name: SHARDSERVE_METRICS_PORT
  value: {{ $v.server.metricsPort | quote }}
- name: SHARDSERVE_RENDEZVOUS_PORT
  value: {{ $v.server.rendezvousPort | quote }}
- name: SHARDSERVE_JOIN_TIMEOUT
  value: {{ include "shardserve.joinTimeout" $ | quote }}
- name: SHARDSERVE_LOG_LEVEL
  value: {{ $v.server.logLevel | quote }}
- name: SHARDSERVE_DRAIN_TIMEOUT
  value: {{ $v.server.drainTimeoutSeconds | quote }}
- name: SHARDSERVE_KV_CACHE_DTYPE
  value: {{ $v.server.kvCacheDtype | quote }}
- name: SHARDSERVE_QUANTIZATION
  value: {{ $v.server.quantization | quote }}
- name: SHARDSERVE_SPECULATIVE_NGRAM
  value: {{ $v.server.speculativeNgram | quote }}
{{- with $v.model.servedModelName }}
- name: SHARDSERVE_SERVED_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.hfToken.secretName }}
- name: SHARDSERVE_HF_TOKEN_FILE
  value: {{ printf "%s/%s" $v.hfToken.mountPath $v.hfToken.secretKey | quote }}
{{- end }}
{{- if $v.server.apiKeySecret.name }}
- name: SHARDSERVE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.server.apiKeySecret.name }}
      key: {{ $v.server.apiKeySecret.key }}
{{- end }}
{{- if eq $v.workload "statefulset" }}
{{- $fullname := include "shardserve.fullname" $ }}
- name: SHARDSERVE_NNODES
  value: {{ include "shardserve.podsPerReplica" $ | quote }}
- name: SHARDSERVE_NODE_RANK
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
- name: SHARDSERVE_LEADER_ADDR
  value: {{ printf "%s-0.%s-rdzv.%s.svc:%d" $fullname $fullname $.Release.Namespace (int $v.server.rendezvousPort) | quote }}
{{- end }}
{{- with $v.nccl.socketIfname }}
- name: NCCL_SOCKET_IFNAME
  value: {{ . | quote }}
{{- end }}
{{- with $v.nccl.debug }}
- name: NCCL_DEBUG
  value: {{ . | quote }}
{{- end }}
- name: HOME
  value: /tmp
{{- with $v.server.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod spec of a serving pod. role: leader (HTTP, probes), worker (no HTTP), member
     (StatefulSet: one template for all pods, so no HTTP probes: workers would fail them). */}}
{{- define "shardserve.servePodSpec" -}}
{{- $ := .root -}}
{{- $v := $.Values -}}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ add $v.server.drainTimeoutSeconds $v.server.preStopSleepSeconds 15 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.schedulerName }}
schedulerName: {{ . | quote }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- if or $v.nodeSelector (and (eq $v.device "cuda") $v.gpu.product) }}
nodeSelector:
  {{- if and (eq $v.device "cuda") $v.gpu.product }}
  nvidia.com/gpu.product: {{ $v.gpu.product | quote }}
  {{- end }}
  {{- with $v.nodeSelector }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- if or $v.tolerations (and (eq $v.device "cuda") $v.gpu.tolerateGpuTaint) }}
tolerations:
  {{- if and (eq $v.device "cuda") $v.gpu.tolerateGpuTaint }}
  - key: nvidia.com/gpu  # any value: the GPU Operator taints "present", EKS and others "true"
    operator: Exists
    effect: NoSchedule
  {{- end }}
  {{- with $v.tolerations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: shardserve
    image: {{ include "shardserve.image" $ | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      - serve
      {{- range $v.server.extraArgs }}
      - {{ . | quote }}
      {{- end }}
    env:
      {{- include "shardserve.serveEnv" . | nindent 6 }}
    {{- if ne .role "worker" }}
    ports:
      - name: http
        containerPort: {{ $v.server.port }}
        protocol: TCP
      - name: metrics
        containerPort: {{ $v.server.metricsPort }}
        protocol: TCP
      - name: rendezvous
        containerPort: {{ $v.server.rendezvousPort }}
        protocol: TCP
    {{- end }}
    {{- if eq .role "leader" }}
    startupProbe:
      httpGet:
        path: /v2/health/live
        port: http
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
      timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
    readinessProbe:
      httpGet:
        path: /v2/health/ready
        port: http
      periodSeconds: {{ $v.probes.readiness.periodSeconds }}
      failureThreshold: {{ $v.probes.readiness.failureThreshold }}
      timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    livenessProbe:
      httpGet:
        path: /v2/health/live
        port: http
      periodSeconds: {{ $v.probes.liveness.periodSeconds }}
      failureThreshold: {{ $v.probes.liveness.failureThreshold }}
      timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    {{- end }}
    {{- if gt (int $v.server.preStopSleepSeconds) 0 }}
    lifecycle:
      preStop:  # the endpoint's removal reaches Services and load balancers while the server still takes requests
        exec:
          command: ["sleep", {{ $v.server.preStopSleepSeconds | quote }}]
    {{- end }}
    resources:
      {{- $res := dict "cpu" $v.resources.cpu "memory" $v.resources.memory }}
      {{- range $k, $n := $v.extraResources }}
      {{- $_ := set $res $k $n }}
      {{- end }}
      {{- if eq $v.device "cuda" }}
      {{- $_ := set $res $v.gpu.resourceName $v.parallelism.gpusPerPod }}
      {{- end }}
      requests:
        {{- toYaml $res | nindent 8 }}
      limits:
        {{- toYaml $res | nindent 8 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: cache
        mountPath: {{ $v.cache.mountPath }}
      - name: dshm
        mountPath: /dev/shm
      - name: tmp
        mountPath: /tmp
      {{- if $v.hfToken.secretName }}
      - name: hf-token
        mountPath: {{ $v.hfToken.mountPath }}
        readOnly: true
      {{- end }}
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: cache
    persistentVolumeClaim:
      claimName: {{ include "shardserve.cacheClaim" $ }}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $v.shmSizeLimit }}
  - name: tmp
    emptyDir: {}
  {{- if $v.hfToken.secretName }}
  - name: hf-token
    secret:
      secretName: {{ $v.hfToken.secretName }}
      defaultMode: 288  # 0440
  {{- end }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
