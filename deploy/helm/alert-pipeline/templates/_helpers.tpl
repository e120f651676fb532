{{- define "alert-pipeline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "alert-pipeline.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "ingest"). */}}
{{- define "alert-pipeline.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "alert-pipeline.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Workers: at most one per partition (a worker without partitions does nothing and is never ready). */}}
{{- define "alert-pipeline.workerReplicas" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- $per := int .Values.worker.partitionsPerWorker -}}
{{- $replicas := .Values.worker.replicas | default (div (add $partitions $per -1) $per) | int -}}
{{- if gt $replicas $partitions -}}
{{- fail (printf "worker.replicas (%d) exceeds kafka.partitions (%d): the extra workers would get no partition" $replicas $partitions) -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/* The worker Deployments: (component, role, replicas, resources, pdb); delivery apart when it has replicas. */}}
{{- define "alert-pipeline.workerKinds" -}}
{{- $delivery := .Values.worker.delivery -}}
{{- if gt (int $delivery.replicas) (int .Values.kafka.partitions) -}}
{{- fail (printf "worker.delivery.replicas (%d) exceeds kafka.partitions (%d)" (int $delivery.replicas) (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- $worker := dict "component" "worker" "role" "all" "replicas" (include "alert-pipeline.workerReplicas" . | int)
      "resources" .Values.worker.resources "pdb" .Values.worker.pdb -}}
{{- $kinds := list $worker -}}
{{- if gt (int $delivery.replicas) 0 -}}
{{- $_ := set $worker "role" "stream" -}}
{{- $kinds = append $kinds (dict "component" "delivery" "role" "delivery" "replicas" (int $delivery.replicas)
      "resources" $delivery.resources "pdb" $delivery.pdb) -}}
{{- end -}}
{{- toJson $kinds -}}
{{- end -}}

{{/* The pipeline's config file: values.config plus the process settings this chart decides. */}}
{{- define "alert-pipeline.config" -}}
{{- $fullname := include "alert-pipeline.fullname" . -}}
{{- $kafka := dict "bootstrap_servers" .Values.kafka.bootstrapServers "partitions" (int .Values.kafka.partitions)
      "replication_factor" (int .Values.kafka.replicationFactor) "min_insync_replicas" (int .Values.kafka.minInsyncReplicas)
      "topic_prefix" .Values.kafka.topicPrefix "security_protocol" .Values.kafka.securityProtocol -}}
{{- with .Values.kafka.sasl.mechanism }}
{{- $_ := set $kafka "sasl_mechanism" . -}}
{{- $_ := set $kafka "sasl_username" $.Values.kafka.sasl.username -}}
{{- $_ := set $kafka "sasl_password_file" "/etc/alert-pipeline/kafka/password" -}}
{{- end }}
{{- if .Values.kafka.tls.caSecret.name }}
{{- $_ := set $kafka "ssl_cafile" "/etc/alert-pipeline/kafka-ca/ca.crt" -}}
{{- end }}
{{- $senders := ternary "delivery" "worker" (gt (int .Values.worker.delivery.replicas) 0) -}}
{{- $ingest := dict "listen" (printf "0.0.0.0:%d" (int .Values.ingest.port))
      "worker_metrics" (list (printf "http://%s-%s.%s.svc:%d/metrics" $fullname $senders .Release.Namespace (int .Values.worker.port))) -}}
{{- $worker := dict "app_id" .Values.worker.appId "metrics_listen" (printf "0.0.0.0:%d" (int .Values.worker.port))
      "data_dir" "/var/lib/alert-pipeline" -}}
{{- $config := mustMergeOverwrite (deepCopy .Values.config) (dict "kafka" $kafka "ingest" $ingest "worker" $worker) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Every topic the pipeline uses (pipeline/kafka/topics.py), as topic: compacted. */}}
{{- define "alert-pipeline.topics" -}}
{{- $p := .Values.kafka.topicPrefix -}}
{{- $topics := dict (printf "%salerts" $p) false (printf "%salerts.deduped" $p) true (printf "%salerts.routed" $p) false
      (printf "%salerts.dlq" $p) false (printf "%ssilences" $p) true (printf "%snotifications.global" $p) false
      (printf "%snotifications.dlq" $p) false (printf "%snotifications.history" $p) false
      (printf "%skube-events" $p) false (printf "%skube-events.dlq" $p) false
      (printf "%skube-auditing" $p) false (printf "%skube-auditing.dlq" $p) false
      (printf "%sdispatch.groups" $p) true (printf "%sdispatch.group-alerts" $p) true
      (printf "%sdelivery.log" $p) true (printf "%ssessions.revoked" $p) true -}}
{{- range .Values.config.tenants -}}
{{- $_ := set $topics (printf "%snotifications.%s" $p .name) false -}}
{{- end -}}
{{- toYaml $topics -}}
{{- end -}}
