{{- define "continuum-agent.labels" -}}
app.kubernetes.io/name: continuum-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
continuum.dev/member: {{ required "member: the MemberCluster's name, as `continuum member join` printed it" .Values.member | quote }}
{{- end -}}
{{- define "continuum-agent.selector" -}}
app.kubernetes.io/name: continuum-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "continuum-agent.hubSecret" -}}
{{- .Values.hubSecret | default (printf "%s-hub" .Release.Name) -}}
{{- end -}}
