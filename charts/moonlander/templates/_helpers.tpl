{{/* The chart name, or nameOverride. */}}
{{- define "moonlander.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, else <release>[-<name>] (63 characters). */}}
{{- define "moonlander.fullname" -}}
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

{{- define "moonlander.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moonlander.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moonlander.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "moonlander.labels" -}}
helm.sh/chart: {{ include "moonlander.chart" . }}
app.kubernetes.io/name: {{ include "moonlander.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "moonlander.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moonlander.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when image.digest is set (the tag is then ignored), else
repository:tag (the appVersion by default). */}}
{{- define "moonlander.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The namespaces the controller watches, as a JSON list: watchNamespaces, or with namespaced
RBAC and no list, the release namespace alone. An empty list means all namespaces.
*/}}
{{- define "moonlander.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else if .Values.rbac.namespaced }}
{{- list .Release.Namespace | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/*
The controller's rules, from config/rbac/role.yaml (the single source; files/rbac/role.yaml is
a symlink to it). Fails rather than render a role without rules.
*/}}
{{- define "moonlander.rules" -}}
{{- $role := .Files.Get "files/rbac/role.yaml" | fromYaml }}
{{- if not $role.rules }}
{{- fail "files/rbac/role.yaml has no rules: is the symlink to config/rbac/role.yaml intact?" }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}

{{- define "moonlander.leaderElectionRules" -}}
{{- $role := .Files.Get "files/rbac/leader-election-role.yaml" | fromYaml }}
{{- if not $role.rules }}
{{- fail "files/rbac/leader-election-role.yaml has no rules: is the symlink to config/rbac/leader-election-role.yaml intact?" }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}

{{/*
The policy reader's rules (LandingPolicies, their status, namespaces' labels), from
config/rbac/policy-reader-role.yaml (files/rbac/policy-reader-role.yaml is a symlink to it).
Cluster-scoped kinds: always a ClusterRole, whichever rbac mode.
*/}}
{{- define "moonlander.policyReaderRules" -}}
{{- $role := .Files.Get "files/rbac/policy-reader-role.yaml" | fromYaml }}
{{- if not $role.rules }}
{{- fail "files/rbac/policy-reader-role.yaml has no rules: is the symlink to config/rbac/policy-reader-role.yaml intact?" }}
{{- end }}
{{- toYaml $role.rules }}
{{- end }}

{{- define "moonlander.webhookCertSecretName" -}}
{{- if .Values.webhook.certManager.enabled }}
{{- printf "%s-webhook-tls" (include "moonlander.fullname" .) }}
{{- else }}
{{- required "webhook.certSecretName is required when webhook.certManager.enabled is false" .Values.webhook.certSecretName }}
{{- end }}
{{- end }}

{{- define "moonlander.webhookCertDir" -}}
/var/run/secrets/moonlander/webhook
{{- end }}

{{- define "moonlander.webhookClientCADir" -}}
/var/run/secrets/moonlander/webhook-client-ca
{{- end }}
