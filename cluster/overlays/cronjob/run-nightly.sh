#!/bin/bash
# Create tonight's RayJob, wait until KubeRay reports it finished, prune old nights, and exit
# non-zero unless the Ray job succeeded (so `kubectl get jobs` shows failed nights).
# kubectl works in the pod's namespace (its service account's), where the CronJob runs.
set -euo pipefail
config=$(dirname "$0")  # the ConfigMap's folder: rayjob.yaml and nightly-patch.yaml lie beside this script
name=$(kubectl patch --local -f "${config}/rayjob.yaml" --type=merge \
  --patch-file "${config}/nightly-patch.yaml" -o yaml | kubectl create -f - -o name)
echo "created ${name}"
while true; do
  # `|| true`: an API server hiccup must not end the wait (and so free the next night)
  deployment=$(kubectl get "${name}" -o jsonpath='{.status.jobDeploymentStatus}' || true)
  case "${deployment}" in
    Complete | Failed) break ;;
  esac
  sleep 60
done
status=$(kubectl get "${name}" -o jsonpath='{.status.jobStatus}')
echo "${name}: deployment ${deployment}, ray job ${status}"
# Keep the newest KEEP_NIGHTS RayJobs: their submitter logs are the recent nights' reports.
kubectl get rayjobs -l app.kubernetes.io/component=nightly \
  --sort-by=.metadata.creationTimestamp -o name \
  | head -n -"${KEEP_NIGHTS}" | xargs -r kubectl delete
[ "${status}" = "SUCCEEDED" ]
