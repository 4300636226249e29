#!/usr/bin/env bash
# Settings and helpers of the end-to-end flows (sourced by e2e/flows.sh; a test sources it to check the
# client pod manifest against Pod Security). The environment it reads is described in e2e/flows.sh.
# shellcheck disable=SC2034  # settings used by the scripts that source this file

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
# Set by the flows once known: the BMC's name and its credentials.
bmc="" user="" pass=""

log() { printf '\n=== %s\n' "$*"; }
fail() { printf 'e2e FAILED: %s\n' "$*" >&2; exit 1; }
# `seconds 300s` -> 300, `seconds 5m` -> 300 (kubectl's --timeout forms, for the waits done here).
seconds() {
  case "$1" in
    *m) echo $((${1%m} * 60)) ;;
    *) echo "${1%s}" ;;
  esac
}

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

# `client_pod_json NAME IMAGE CMD...`: a one-off client pod the BMC's NetworkPolicy admits (the client
# label, in the BMC's namespace) and its namespace's Pod Security `restricted` level accepts.
client_pod_json() {
  local name=$1 image=$2 args="" a
  shift 2
  for a in "$@"; do args="$args, $(printf '%s' "$a" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')"; done
  cat <<JSON
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "$name", "namespace": "$SYSTEM_NS", "labels": {"$CLIENT_LABEL": "true"}},
 "spec": {"restartPolicy": "Never",
  "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "runAsGroup": 65534,
                      "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "client", "image": "$image", "command": [${args#, }],
   "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                       "capabilities": {"drop": ["ALL"]}},
   "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}}]}}
JSON
}

# `in_client_pod IMAGE CMD...`: run CMD in a client pod; print its output; its exit status is CMD's.
in_client_pod() {
  local image=$1 name phase
  shift
  name="e2e-client-$RANDOM$RANDOM"
  client_pod_json "$name" "$image" "$@" | kubectl apply --validate="$KUBECTL_VALIDATE" -f - >/dev/null
  until_ok "$(seconds "$TIMEOUT")" "client pod $name to finish" pod_finished "$name"
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
# The running kbmc pod's IP; a pod being deleted (the one a rollout replaces) still shows Running.
kbmc_pod_ip() {
  kubectl -n "$SYSTEM_NS" get pods -l "virtualmachinebmc.kubevirt.io/bmc=$bmc" \
    --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.status.podIP}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' |
    awk 'NF == 1 { print $1; exit }'
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

# `write_overlay DIR IMAGE`: DIR/kustomization.yaml applying deploy/ with every `vmbmc` image renamed to
# IMAGE (NAME:TAG), as a user's overlay would. DIR is a directory of e2e/ (kustomize takes no absolute
# paths to a base).
write_overlay() {
  cat >"$1/kustomization.yaml" <<YAML
resources: [../../deploy]
images:
- name: vmbmc
  newName: ${2%:*}
  newTag: ${2##*:}
YAML
}
