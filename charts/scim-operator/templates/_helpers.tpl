{{/*
Chart name, for the app.kubernetes.io/name label.
*/}}
{{- define "scim-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: the release name when it already says scim-operator (the
README's `helm install scim-operator ...` gives the names config/default gives), else
<release>-scim-operator.
*/}}
{{- define "scim-operator.fullname" -}}
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

{{/*
A resource name: the prefix and a suffix, e.g. (include "scim-operator.resourceName" (list . "manager-role")).
*/}}
{{- define "scim-operator.resourceName" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "scim-operator.fullname" $ctx) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scim-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scim-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "scim-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scim-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scim-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "scim-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scim-operator.resourceName" (list . "controller-manager")) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the Secrets of ClusterScimTargets live, and where the operator keeps its credential
snapshots and its leader-election lease: --cluster-resource-namespace.
*/}}
{{- define "scim-operator.clusterResourceNamespace" -}}
{{- default .Release.Namespace .Values.clusterResourceNamespace }}
{{- end }}

{{- define "scim-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether an admission policy is installed: (include "scim-operator.policyEnabled" (list . "name" value "1.36.0")).
true/false decide; "auto" installs it when the cluster's version (helm's
.Capabilities.KubeVersion: the cluster's on install, --kube-version for helm template) is at
least the version that serves the policy's API. Renders "true" or nothing.
*/}}
{{- define "scim-operator.policyEnabled" -}}
{{- $ctx := index . 0 }}
{{- $name := index . 1 }}
{{- $value := index . 2 }}
{{- $min := index . 3 }}
{{- if eq (toString $value) "auto" }}
{{- if semverCompare (printf ">=%s-0" $min) $ctx.Capabilities.KubeVersion.Version }}true{{ end }}
{{- else if eq (toString $value) "true" }}true
{{- else if ne (toString $value) "false" }}
{{- fail (printf "admissionPolicies.%s must be auto, true or false, not %v" $name $value) }}
{{- end }}
{{- end }}

{{/*
The Secret holding the metrics certificate (tls.crt, tls.key, ca.crt): metrics.certSecret, or
"<prefix>-metrics-cert" when metrics.certManager.enabled creates it; empty: none (the manager's
self-signed certificate).
*/}}
{{- define "scim-operator.metricsCertSecret" -}}
{{- if .Values.metrics.certSecret }}
{{- .Values.metrics.certSecret }}
{{- else if .Values.metrics.certManager.enabled }}
{{- include "scim-operator.resourceName" (list . "metrics-cert") }}
{{- end }}
{{- end }}

{{/*
The metrics Service's name, and the DNS name its certificate carries and Prometheus verifies.
*/}}
{{- define "scim-operator.metricsServiceName" -}}
{{- include "scim-operator.resourceName" (list . "controller-manager-metrics-service") }}
{{- end }}

{{- define "scim-operator.metricsServerName" -}}
{{- printf "%s.%s.svc" (include "scim-operator.metricsServiceName" .) .Release.Namespace }}
{{- end }}

{{/*
The selector of the manager pods (Deployment, PodDisruptionBudget, NetworkPolicy, spread).
*/}}
{{- define "scim-operator.managerSelectorLabels" -}}
{{ include "scim-operator.selectorLabels" . }}
app.kubernetes.io/component: controller-manager
{{- end }}

{{/*
The manager flags the chart sets from values: extraArgs may not set them too (the last one
would win, silently).
*/}}
{{- define "scim-operator.chartFlags" -}}
{{- toJson (dict
  "leader-elect" "leaderElection.enabled"
  "health-probe-bind-address" "healthProbe.port"
  "metrics-bind-address" "metrics.enabled and metrics.port"
  "metrics-secure" "metrics.secure"
  "metrics-cert-path" "metrics.certSecret"
  "cluster-resource-namespace" "clusterResourceNamespace"
  "watch-namespaces" "watchNamespaces"
  "cluster-id" "clusterID"
  "max-concurrent-reconciles" "maxConcurrentReconciles"
  "scim-timeout" "scimTimeout"
  "namespaced-target-allowed-cidrs" "namespacedTargetAllowedCIDRs"
  "namespaced-target-denied-cidrs" "namespacedTargetDeniedCIDRs"
  "kube-api-qps" "kubeAPI.qps"
  "kube-api-burst" "kubeAPI.burst") }}
{{- end }}

{{/*
Whether the creation-stamps policies are installed along with status-writers, so that the
operator runs with --creation-stamps-guarded. Renders "true" or nothing.
*/}}
{{- define "scim-operator.creationStampsGuarded" -}}
{{- if and (include "scim-operator.policyEnabled" (list . "creationStamps" .Values.admissionPolicies.creationStamps "1.36.0")) (include "scim-operator.policyEnabled" (list . "statusWriters" .Values.admissionPolicies.statusWriters "1.30.0")) }}true{{ end }}
{{- end }}
