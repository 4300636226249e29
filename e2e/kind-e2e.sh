#!/usr/bin/env bash
# End-to-end on a real cluster: kind + KubeVirt (software emulation) + CDI + vmbmc.
# Needs Docker, kind, kubectl and network access to the KubeVirt/CDI release manifests and images.
# It cannot run on the project's build machines (no container images there); CI lints it with shellcheck.
#
# Usage: e2e/kind-e2e.sh [--keep]      (--keep leaves the cluster up for inspection)
set -euo pipefail

CLUSTER=${CLUSTER:-vmbmc-e2e}
IMAGE=${IMAGE:-vmbmc:e2e}
KUBEVIRT_VERSION=${KUBEVIRT_VERSION:-v1.6.0}
CDI_VERSION=${CDI_VERSION:-v1.62.0}
SYSTEM_NS=virtualmachinebmc-system
VM_NS=${VM_NS:-default}
VM=${VM:-test-vm}
KEEP=false
[ "${1:-}" = "--keep" ] && KEEP=true

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

log() { printf '\n=== %s\n' "$*"; }
cleanup() {
  if [ "$KEEP" = false ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

log "kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s

log "KubeVirt $KUBEVIRT_VERSION (software emulation) and CDI $CDI_VERSION"
kubectl apply -f "https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}/kubevirt-operator.yaml"
kubectl apply -f "https://github.com/kubevirt/kubevirt/releases/download/${KUBEVIRT_VERSION}/kubevirt-cr.yaml"
kubectl -n kubevirt patch kubevirt kubevirt --type=merge \
  -p '{"spec":{"configuration":{"developerConfiguration":{"useEmulation":true}}}}'
kubectl apply -f "https://github.com/kubevirt/containerized-data-importer/releases/download/${CDI_VERSION}/cdi-operator.yaml"
kubectl apply -f "https://github.com/kubevirt/containerized-data-importer/releases/download/${CDI_VERSION}/cdi-cr.yaml"
kubectl -n kubevirt wait kv kubevirt --for condition=Available --timeout=600s

log "vmbmc image $IMAGE"
docker build -t "$IMAGE" "$root"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "deploy vmbmc"
kubectl apply -k "$root/deploy"
kubectl -n "$SYSTEM_NS" set image deployment/vmbmc-controller controller="$IMAGE"
kubectl -n "$SYSTEM_NS" rollout status deployment/vmbmc-controller --timeout=180s

log "a VM: $VM_NS/$VM"
kubectl -n "$VM_NS" apply -f - <<YAML
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: $VM
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices:
          disks:
          - name: containerdisk
            disk: {bus: virtio}
          interfaces:
          - name: default
            masquerade: {}
        resources:
          requests: {memory: 128Mi}
      networks:
      - name: default
        pod: {}
      volumes:
      - name: containerdisk
        containerDisk: {image: quay.io/kubevirt/cirros-container-disk-demo}
YAML

bmc="${VM_NS}-${VM}"
log "wait for the auto-created VirtualMachineBMC $SYSTEM_NS/$bmc"
for _ in $(seq 1 60); do
  kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" >/dev/null 2>&1 && break
  sleep 2
done
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=jsonpath='{.status.ready}'=true --timeout=180s
secret=$(kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" -o jsonpath='{.status.credentialsSecret}')
user=$(kubectl -n "$SYSTEM_NS" get secret "$secret" -o jsonpath='{.data.username}' | base64 -d)
pass=$(kubectl -n "$SYSTEM_NS" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)
host="${bmc}-kbmc.${SYSTEM_NS}.svc.cluster.local"

log "the seed README's flow: ipmitool from a pod in the cluster"
# The NetworkPolicy admits clients labelled as BMC clients (docs/security.md).
ipmi() {
  kubectl run "ipmitool-$RANDOM" --rm -i --restart=Never --image=mikeynap/ipmitool \
    --labels=virtualmachinebmc.kubevirt.io/client=true --command -- \
    ipmitool -I lanplus -U "$user" -P "$pass" -H "$host" "$@"
}
ipmi power status | tee /dev/stderr | grep -q 'Chassis Power is off'
ipmi power on | tee /dev/stderr | grep -q 'Chassis Power Control: Up/On'
kubectl -n "$VM_NS" wait vm "$VM" --for=condition=Ready --timeout=300s
ipmi power status | tee /dev/stderr | grep -q 'Chassis Power is on'

log "Redfish flow"
kubectl -n "$SYSTEM_NS" patch vmbmc "$bmc" --type=merge -p '{"spec":{"redfish":{"enabled":true}}}'
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=jsonpath='{.status.ready}'=true --timeout=180s
kubectl run "curl-$RANDOM" --rm -i --restart=Never --image=curlimages/curl \
  --labels=virtualmachinebmc.kubevirt.io/client=true --command -- \
  curl -sk -u "$user:$pass" -X POST -H 'Content-Type: application/json' \
  -d '{"ResetType":"ForceOff"}' \
  "https://${host}/redfish/v1/Systems/${VM}/Actions/ComputerSystem.Reset"
kubectl -n "$VM_NS" wait vm "$VM" --for=jsonpath='{.status.printableStatus}'=Stopped --timeout=300s

log "power history"
kubectl -n "$SYSTEM_NS" describe vmbmc "$bmc" | tee /dev/stderr | grep -q 'PoweredOff'
log "e2e passed"
