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

SYSTEM_NS=${SYSTEM_NS:-virtualmachinebmc-system}
VM_NS=${VM_NS:-default}
VM=${VM:-test-vm}
E2E_CLIENT=${E2E_CLIENT:-pod}
IPMITOOL_IMAGE=${IPMITOOL_IMAGE:-mikeynap/ipmitool}
CURL_IMAGE=${CURL_IMAGE:-curlimages/curl}
KUBECTL_VALIDATE=${KUBECTL_VALIDATE:-true}
TIMEOUT=${TIMEOUT:-300s}
CONTROLLER_DEPLOYMENT=${CONTROLLER_DEPLOYMENT-vmbmc-controller}
CLIENT_LABEL=virtualmachinebmc.kubevirt.io/client

log() { printf '\n=== %s\n' "$*"; }
fail() { printf 'e2e FAILED: %s\n' "$*" >&2; exit 1; }
seconds() { local t=${1%s}; echo "${t%m}"; }

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

# `until_ok SECONDS WHAT CMD...`: run CMD every 2 s until it succeeds; fail naming WHAT after SECONDS.
until_ok() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@"; do
    [ $((SECONDS - start)) -lt "$limit" ] || fail "timed out after ${limit}s waiting for $what"
    sleep 2
  done
}

# --- clients ----------------------------------------------------------------------------------------

pod_finished() {
  local phase
  phase=$(kubectl -n "$SYSTEM_NS" get pod "$1" -o jsonpath='{.status.phase}')
  [ "$phase" = Succeeded ] || [ "$phase" = Failed ]
}

# `in_client_pod IMAGE CMD...`: run CMD in a one-off pod the BMC's NetworkPolicy admits; print its output.
in_client_pod() {
  local image=$1 name
  shift
  name="e2e-client-$RANDOM$RANDOM"
  local args="" a
  for a in "$@"; do args="$args, $(printf '%s' "$a" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')"; done
  kubectl -n "$SYSTEM_NS" apply --validate="$KUBECTL_VALIDATE" -f - >/dev/null <<JSON
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "$name", "labels": {"$CLIENT_LABEL": "true"}},
 "spec": {"restartPolicy": "Never",
  "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
                      "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "client", "image": "$image", "command": [${args#, }],
   "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                       "capabilities": {"drop": ["ALL"]}},
   "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}}]}}
JSON
  until_ok "$(seconds "$TIMEOUT")" "client pod $name to finish" pod_finished "$name"
  local phase
  phase=$(kubectl -n "$SYSTEM_NS" get pod "$name" -o jsonpath='{.status.phase}')
  kubectl -n "$SYSTEM_NS" logs "$name"
  kubectl -n "$SYSTEM_NS" delete pod "$name" --wait=false >/dev/null
  [ "$phase" = Succeeded ]
}

# Where clients reach the BMC: its Service name (pod) or its pod's IP (local).
ipmi_target() {
  if [ "$E2E_CLIENT" = pod ]; then
    echo "${bmc}-kbmc.${SYSTEM_NS}.svc.cluster.local 623"
  else
    echo "$(kbmc_pod_ip) 10623"
  fi
}
redfish_base() {
  local scheme
  scheme=$(kubectl -n "$SYSTEM_NS" get vmbmc "$bmc" -o jsonpath='{.spec.redfish.insecureHTTP}')
  if [ "$scheme" = true ]; then scheme=http; else scheme=https; fi
  if [ "$E2E_CLIENT" = pod ]; then
    echo "${scheme}://${bmc}-kbmc.${SYSTEM_NS}.svc.cluster.local/redfish/v1"
  else
    echo "${scheme}://$(kbmc_pod_ip):8443/redfish/v1"
  fi
}
kbmc_pod_ip() {
  kubectl -n "$SYSTEM_NS" get pods -l "virtualmachinebmc.kubevirt.io/bmc=$bmc" \
    --field-selector=status.phase=Running -o jsonpath='{.items[0].status.podIP}'
}

# `ipmi INTERFACE ARGS...`: ipmitool against the BMC with its credentials.
ipmi() {
  local interface=$1 host port
  shift
  read -r host port <<<"$(ipmi_target)"
  local cmd=(ipmitool -I "$interface" -H "$host" -p "$port" -U "$user" -P "$pass" "$@")
  if [ "$E2E_CLIENT" = pod ]; then in_client_pod "$IPMITOOL_IMAGE" "${cmd[@]}"; else "${cmd[@]}"; fi
}
# `redfish ARGS...`: curl with the BMC's credentials; prints the body, then the HTTP status on its own line.
redfish() {
  local cmd=(curl -sk -u "$user:$pass" -w '\n%{http_code}\n' "$@")
  if [ "$E2E_CLIENT" = pod ]; then in_client_pod "$CURL_IMAGE" "${cmd[@]}"; else "${cmd[@]}"; fi
}
# `expect WHAT REGEX CMD...`: CMD's output (shown on stderr) must match REGEX (grep -E).
expect() {
  local what=$1 pattern=$2 out
  shift 2
  out=$("$@" 2>&1) || fail "$what: command failed: $out"
  printf '%s\n' "$out" >&2
  grep -qE -- "$pattern" <<<"$out" || fail "$what: expected /$pattern/"
}
# `expect_status WHAT CODE redfish ARGS...`: the HTTP status (redfish's last line) must be CODE.
expect_status() {
  local what=$1 code=$2 out
  shift 2
  out=$("$@" 2>&1) || fail "$what: command failed: $out"
  printf '%s\n' "$out" >&2
  [ "$(tail -n 1 <<<"$out")" = "$code" ] || fail "$what: expected HTTP $code"
}

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
