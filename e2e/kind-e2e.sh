#!/usr/bin/env bash
# End-to-end on a real cluster: KubeVirt + vmbmc, then the user flows of e2e/flows.sh.
#
#   e2e/kind-e2e.sh [--keep]               create a kind cluster, install KubeVirt (software emulation) and
#                                          CDI, build the vmbmc image, load it and apply deploy/ (an
#                                          overlay naming that image: `kubectl apply -k`);
#                                          --keep leaves the cluster up for inspection
#   e2e/kind-e2e.sh --kubeconfig PATH      run the flows against an existing cluster where KubeVirt and
#                                          vmbmc are already installed (no kind, Docker or image steps)
#
# The kind mode needs Docker, kind, kubectl and network access to the KubeVirt/CDI release manifests and
# images; the project's build machines have none of these, so there it is linted with shellcheck and its
# flows run in the --kubeconfig mode against `vmbmc demo`'s emulator (tests/integration/demo/
# test_e2e_script.py, with E2E_CLIENT=local: see e2e/flows.sh for the environment it reads).
set -euo pipefail

usage() { sed -n '3,9s/^# \{0,1\}//p' "$0"; }

CLUSTER=${CLUSTER:-vmbmc-e2e}
IMAGE=${IMAGE:-vmbmc:e2e}  # NAME:TAG (a registry host's :PORT is not a tag)
case "${IMAGE##*/}" in
  *:*) ;;
  *) echo "IMAGE must name a tag (NAME:TAG), not '$IMAGE'" >&2; exit 2 ;;
esac
KUBEVIRT_VERSION=${KUBEVIRT_VERSION:-v1.6.0}
CDI_VERSION=${CDI_VERSION:-v1.62.0}
SYSTEM_NS=${SYSTEM_NS:-virtualmachinebmc-system}
KEEP=false
KUBECONFIG_GIVEN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) KEEP=true ;;
    --kubeconfig)
      [ $# -ge 2 ] || { echo "--kubeconfig needs a PATH" >&2; usage >&2; exit 2; }
      KUBECONFIG_GIVEN=$2
      shift
      ;;
    --kubeconfig=*) KUBECONFIG_GIVEN=${1#--kubeconfig=} ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

if [ -n "$KUBECONFIG_GIVEN" ]; then
  [ -r "$KUBECONFIG_GIVEN" ] || { echo "--kubeconfig $KUBECONFIG_GIVEN: no such readable file" >&2; exit 2; }
  KUBECONFIG=$(cd "$(dirname "$KUBECONFIG_GIVEN")" && pwd)/$(basename "$KUBECONFIG_GIVEN")
  export KUBECONFIG
  log "existing cluster ($KUBECONFIG)"
  exec bash "$here/flows.sh"
fi

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

cleanup() {
  if [ "$KEEP" = false ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

log "kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
# kind's default CNI (kindnet) does not enforce NetworkPolicy: the client pods' label is then not needed
# to get in, but they carry it anyway so the flows are the same on a CNI that enforces it.

log "KubeVirt $KUBEVIRT_VERSION (software emulation) and CDI $CDI_VERSION"
kubectl apply -f "https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}/kubevirt-operator.yaml"
kubectl -n kubevirt rollout status deployment/virt-operator --timeout=300s
kubectl apply -f "https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}/kubevirt-cr.yaml"
kubectl -n kubevirt patch kubevirt kubevirt --type=merge \
  -p '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}'
kubectl apply -f "https://github.com/kubevirt/containerized-data-importer/releases/download/${CDI_VERSION}/cdi-operator.yaml"
kubectl -n cdi rollout status deployment/cdi-operator --timeout=300s
kubectl apply -f "https://github.com/kubevirt/containerized-data-importer/releases/download/${CDI_VERSION}/cdi-cr.yaml"
kubectl -n kubevirt wait kv kubevirt --for condition=Available --timeout=600s
kubectl wait cdi cdi --for condition=Available --timeout=600s

log "vmbmc image $IMAGE"
docker build -t "$IMAGE" "$root"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "deploy vmbmc"
# An overlay naming the image, as a user would write one: kustomize rewrites every `vmbmc` image in
# deploy/ (the controller's, which its kbmc pods use too).
overlay=$(mktemp -d "$here/overlay.XXXXXX")
trap 'rm -rf "$overlay"; cleanup' EXIT
write_overlay "$overlay" "$IMAGE"
kubectl apply -k "$overlay"
kubectl -n "$SYSTEM_NS" rollout status deployment/vmbmc-controller --timeout=180s

SYSTEM_NS=$SYSTEM_NS bash "$here/flows.sh"
