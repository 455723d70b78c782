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
