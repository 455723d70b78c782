{{- define "continuum.labels" -}}
app.kubernetes.io/name: continuum
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "continuum.selector" -}}
app.kubernetes.io/name: continuum
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "continuum.leaseName" -}}
{{ .Release.Name }}-operator-leader
{{- end -}}
{{- define "continuum.checkLeaderElection" -}}
{{- with .Values.leaderElection -}}
{{- if not (lt (float64 .retryPeriodSeconds) (float64 .renewDeadlineSeconds)) -}}
{{- fail (printf "leaderElection.retryPeriodSeconds (%v) must be below leaderElection.renewDeadlineSeconds (%v)" .retryPeriodSeconds .renewDeadlineSeconds) -}}
{{- end -}}
{{- if not (lt (float64 .renewDeadlineSeconds) (float64 .leaseDurationSeconds)) -}}
{{- fail (printf "leaderElection.renewDeadlineSeconds (%v) must be below leaderElection.leaseDurationSeconds (%v): a leader must give up before a standby may take over" .renewDeadlineSeconds .leaseDurationSeconds) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- define "continuum.webhookService" -}}
{{ .Release.Name }}-webhook
{{- end -}}
{{- define "continuum.webhookSecret" -}}
{{ .Release.Name }}-webhook-tls
{{- end -}}
