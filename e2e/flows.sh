#!/usr/bin/env bash
# The user flows of the end-to-end test, against whatever cluster KUBECONFIG (or kubectl's default) names,
# with KubeVirt and vmbmc already installed: a VM gets its auto-created VirtualMachineBMC; the seed
# README's ipmitool flow powers it on (IPMI 2.0 and IPMI 1.5); Redfish, once enabled, powers it off; the
# BMC's power history names who did it. e2e/kind-e2e.sh runs it after building a kind cluster, or alone
# against an existing one (`e2e/kind-e2e.sh --kubeconfig PATH`).
#
# Environment (defaults in brackets):
#   SYSTEM_NS [virtualmachinebmc-system]  the controller's namespace, where auto-created BMCs live
#   VM_NS [default], VM [test-vm]         the VM the flows create (and delete at the end)
#   E2E_CLIENT [pod]                      where ipmitool and curl run:
#       pod    in a pod in SYSTEM_NS labelled virtualmachinebmc.kubevirt.io/client=true, the only pods
#              the NetworkPolicy the controller writes lets in (restricted Pod Security, non-root);
#              they reach the BMC through its Service: <bmc>-kbmc.<ns>.svc, 623/UDP and 443/TCP
#       local  on this machine (ipmitool and curl on PATH), straight to the kbmc pod's IP and container
#              ports (10623/UDP, 8443/TCP). For clusters whose pod IPs this machine reaches, such as
#              `vmbmc demo`'s emulator (tests/integration/demo/test_e2e_script.py runs it so)
#   IPMITOOL_IMAGE [mikeynap/ipmitool], CURL_IMAGE [curlimages/curl]   the client pods' images
#   CONTROLLER_DEPLOYMENT [vmbmc-controller]   the controller's Deployment in SYSTEM_NS, awaited first;
#                                         empty: the controller does not run as a Deployment there
#   KUBECTL_VALIDATE [true]               kubectl apply --validate=... (`vmbmc demo` serves no OpenAPI: false)
#   TIMEOUT [300s]                        the longest any one wait may take
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

case "$E2E_CLIENT" in
  pod | local) ;;
  *) echo "E2E_CLIENT must be pod or local, not '$E2E_CLIENT'" >&2; exit 2 ;;
esac
for tool in kubectl base64; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done
if [ "$E2E_CLIENT" = local ]; then
  for tool in ipmitool curl; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (E2E_CLIENT=local runs it here)" >&2; exit 2; }
  done
fi

# --- the flows --------------------------------------------------------------------------------------

if [ -n "$CONTROLLER_DEPLOYMENT" ]; then
  log "vmbmc is running"
  kubectl -n "$SYSTEM_NS" rollout status "deployment/$CONTROLLER_DEPLOYMENT" --timeout="$TIMEOUT"
fi

log "a VM: $VM_NS/$VM (Halted)"
kubectl -n "$VM_NS" apply --validate="$KUBECTL_VALIDATE" -f - <<YAML
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

log "its auto-created VirtualMachineBMC"
selector="virtualmachinebmc.kubevirt.io/vm-namespace=$VM_NS,virtualmachinebmc.kubevirt.io/vm-name=$VM"
find_bmc() {
  bmc=$(kubectl -n "$SYSTEM_NS" get vmbmc -l "$selector" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
  [ -n "$bmc" ]
}
bmc=""
until_ok 120 "the auto-created BMC of $VM_NS/$VM" find_bmc
echo "BMC $SYSTEM_NS/$bmc"
kbmc_deployment() { kubectl -n "$SYSTEM_NS" get deployment "${bmc}-kbmc" >/dev/null 2>&1; }
until_ok 120 "the kbmc Deployment ${bmc}-kbmc" kbmc_deployment
kubectl -n "$SYSTEM_NS" rollout status "deployment/${bmc}-kbmc" --timeout="$TIMEOUT"
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=condition=Ready --timeout="$TIMEOUT"
secret=$(kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" -o jsonpath='{.status.credentialsSecret}')
user=$(kubectl -n "$SYSTEM_NS" get secret "$secret" -o jsonpath='{.data.username}' | base64 -d)
pass=$(kubectl -n "$SYSTEM_NS" get secret "$secret" -o jsonpath='{.data.password}' | base64 -d)

log "the seed README's flow: ipmitool ($E2E_CLIENT client)"
expect "IPMI 2.0 power status" 'Chassis Power is off' ipmi lanplus power status
expect "IPMI 1.5 power status" 'Chassis Power is off' ipmi lan power status
expect "IPMI power on" 'Chassis Power Control: Up/On' ipmi lanplus power on
kubectl -n "$VM_NS" wait vm "$VM" --for=condition=Ready --timeout="$TIMEOUT"
expect "IPMI power status" 'Chassis Power is on' ipmi lan power status

log "Redfish flow"
kubectl -n "$SYSTEM_NS" patch vmbmc "$bmc" --type=merge -p '{"spec":{"redfish":{"enabled":true}}}'
generation=$(kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" -o jsonpath='{.metadata.generation}')
# Ready was already true: wait for the controller to have seen this generation, then for the new pod.
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=jsonpath='{.status.observedGeneration}'="$generation" \
  --timeout="$TIMEOUT"
redfish_endpoint() { [ -n "$(kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" -o jsonpath='{.status.endpoints.redfish}')" ]; }
until_ok 60 "status.endpoints.redfish" redfish_endpoint
kubectl -n "$SYSTEM_NS" rollout status "deployment/${bmc}-kbmc" --timeout="$TIMEOUT"
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=condition=Ready --timeout="$TIMEOUT"
base=$(redfish_base)
expect "Redfish GET System" '"PowerState": ?"On"' redfish "$base/Systems/$VM"
expect_status "Redfish ForceOff" 204 redfish -X POST -H 'Content-Type: application/json' \
  -d '{"ResetType":"ForceOff"}' "$base/Systems/$VM/Actions/ComputerSystem.Reset"
kubectl -n "$VM_NS" wait vm "$VM" --for=jsonpath='{.status.printableStatus}'=Stopped --timeout="$TIMEOUT"

log "power history"
powered_off() {
  kubectl -n "$SYSTEM_NS" describe vmbmc "$bmc" | grep -q "PoweredOff.*by Redfish user $user"
}
until_ok 60 "PoweredOff by Redfish user $user in the BMC's history" powered_off
kubectl -n "$SYSTEM_NS" describe vmbmc "$bmc" | grep -E 'PoweredOn|PoweredOff' >&2

log "clean up: the VM goes, and its BMC with it"
kubectl -n "$VM_NS" delete vm "$VM" --wait=false
kubectl -n "$SYSTEM_NS" wait vmbmc "$bmc" --for=delete --timeout="$TIMEOUT"
log "e2e passed"
