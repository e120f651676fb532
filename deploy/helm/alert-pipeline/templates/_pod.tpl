{{/* What the ingest and worker pods share: config, secrets, Kafka credentials, security context. */}}
{{- define "alert-pipeline.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap: {name: {{ include "alert-pipeline.fullname" . }}}
  - name: secrets
    secret: {secretName: {{ .Values.existingSecret | default (include "alert-pipeline.fullname" .) }}}
  {{- if .Values.kafka.sasl.mechanism }}
  - name: kafka-password
    secret:
      secretName: {{ required "kafka.sasl.passwordSecret.name" .Values.kafka.sasl.passwordSecret.name }}
      items: [{key: {{ .Values.kafka.sasl.passwordSecret.key }}, path: password}]
  {{- end }}
  {{- if .Values.kafka.tls.caSecret.name }}
  - name: kafka-ca
    secret:
      secretName: {{ .Values.kafka.tls.caSecret.name }}
      items: [{key: {{ .Values.kafka.tls.caSecret.key }}, path: ca.crt}]
  {{- end }}
  - name: tmp
    emptyDir: {}
{{- end -}}

{{- define "alert-pipeline.mounts" -}}
- {name: config, mountPath: /etc/alert-pipeline/config, readOnly: true}
- {name: secrets, mountPath: /etc/alert-pipeline/secrets, readOnly: true}
{{- if .Values.kafka.sasl.mechanism }}
- {name: kafka-password, mountPath: /etc/alert-pipeline/kafka, readOnly: true}
{{- end }}
{{- if .Values.kafka.tls.caSecret.name }}
- {name: kafka-ca, mountPath: /etc/alert-pipeline/kafka-ca, readOnly: true}
{{- end }}
- {name: tmp, mountPath: /tmp}
{{- end -}}
