#!/usr/bin/env bash
# Install what building and testing funnelflow needs, where it is missing:
#   curl, Java (>= 11, for the Firestore emulator), pkg-config and libssl-dev (openssl-sys)
#   from Debian/Ubuntu apt (python3-venv too, when Python cannot make a venv),
#   and the pinned Python test tools (tests/fuzz/requirements.txt: schemathesis,
#   openapi-spec-validator) into <repo>/.venv from PyPI,
# and check what cannot be installed from here: cargo (rustfmt and clippy when CI=true) and the
# Firestore emulator itself. Idempotent; prints nothing when everything is present.
# `apt-get update` runs only when something has to be installed; sudo only when not root.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# The java start.sh would run (JAVA, JAVA_HOME, else PATH).
java_cmd() {
  if [[ -n ${JAVA:-} ]]; then
    printf '%s\n' "$JAVA"
  elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    printf 'java\n'
  fi
}

# Major version of that java ("1.8.0_292" -> 8, "17.0.15" -> 17), or nothing if there is none.
java_major() {
  local java version
  java=$(java_cmd)
  command -v "$java" >/dev/null 2>&1 || return 0
  version=$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)
  version=${version#1.}
  printf '%s\n' "${version%%[.+_-]*}"
}

java_ok() {
  local major
  major=$(java_major)
  [[ $major =~ ^[0-9]+$ ]] && ((major >= 11))
}

# --- Debian packages ---------------------------------------------------------

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
java_ok || missing+=(java)
# The firestore crate's TLS stack builds openssl-sys: it needs OpenSSL's headers and pkg-config.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'ok installed' || missing+=(libssl-dev)
fi
# The Python test tools live in a venv (Python >= 3.11; Debian splits venv/ensurepip out).
readonly VENV=$REPO_ROOT/.venv
readonly PY_REQUIREMENTS=$REPO_ROOT/tests/fuzz/requirements.txt
python_ok() {
  local py=${PYTHON:-python3}
  command -v "$py" >/dev/null 2>&1 &&
    "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}
if [[ ! -x $VENV/bin/python ]] && ! python_ok; then
  missing+=(python3 python3-venv)
fi

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    die "missing: ${missing[*]} (java means a JRE >= 11, e.g. OpenJDK 17). This is not a Debian/Ubuntu" \
      "machine: install them with your package manager (macOS: brew install openjdk@17 curl)."
  fi
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
      die "missing: ${missing[*]}; run as root: apt-get update && apt-get install -y curl openjdk-17-jre-headless"
    sudo=(sudo)
  fi
  apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
  log "installing missing: ${missing[*]}"
  ${sudo[@]+"${sudo[@]}"} apt-get "${apt_opts[@]}" update -qq >&2
  packages=()
  for m in "${missing[@]}"; do
    if [[ $m == java ]]; then
      # openjdk-17 is in Debian 12 / Ubuntu 22.04+; newer releases may only have a newer default.
      if apt-cache policy openjdk-17-jre-headless 2>/dev/null | grep -q '^ *Candidate: *[0-9]'; then
        packages+=(openjdk-17-jre-headless)
      else
        packages+=(default-jre-headless)
      fi
    else
      packages+=("$m")
    fi
  done
  ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${packages[@]}" >&2
  command -v curl >/dev/null 2>&1 || die "curl is still missing after apt-get install"
  java_ok || die "$(java_cmd) is still not Java >= 11 (found: $(java_major | grep . || echo none)); point JAVA_HOME at a JDK/JRE >= 11" \
    "or select one with: sudo update-alternatives --config java"
  log "installed: ${packages[*]}"
fi

# --- Python test tools (PyPI, exact pins) -------------------------------------

# Reinstalled only when the requirements changed (their copy in the venv differs).
if [[ ! -x $VENV/bin/python ]] || ! cmp -s "$PY_REQUIREMENTS" "$VENV/requirements.txt"; then
  log "installing the Python test tools into $VENV (tests/fuzz/requirements.txt)"
  [[ -x $VENV/bin/python ]] || "${PYTHON:-python3}" -m venv "$VENV" >&2 ||
    die "could not create $VENV: install python3 and python3-venv (Python >= 3.11)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --requirement "$PY_REQUIREMENTS" >&2 || die "pip install -r $PY_REQUIREMENTS failed"
  cp "$PY_REQUIREMENTS" "$VENV/requirements.txt"
fi

# --- Rust toolchain (preinstalled; not downloadable from here) ----------------

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
  else
    die "cargo not found: install the Rust toolchain (https://rustup.rs; Rust >= the rust-version in" \
      "Cargo.toml) or add it to PATH"
  fi
fi
if [[ ${CI:-} == true ]]; then
  cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing (CI runs cargo fmt): rustup component add rustfmt"
  cargo clippy --version >/dev/null 2>&1 || die "clippy missing (CI runs cargo clippy): rustup component add clippy"
fi

# --- Firestore emulator (Google's apt repo / gcloud only) --------------------

"$REPO_ROOT/emulator/start.sh" --print-jar >/dev/null ||
  die "the Firestore emulator is required to run the tests (see above)"

# --- Firestore rules tests: Node.js >= 20 and tests/rules' pinned npm packages ---
# (@firebase/rules-unit-testing and the Firebase JS SDK, exactly as package-lock.json says).
# `npm ci` runs only when the lock file changed since the last install (a stamp in node_modules).

readonly RULES_TESTS_DIR=$REPO_ROOT/tests/rules
node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
[[ $node_major =~ ^[0-9]+$ ]] && ((node_major >= 20)) ||
  die "the Firestore rules tests need Node.js >= 20 with npm (found: $(node --version 2>/dev/null || echo none));" \
    "Debian's own nodejs package may be older: install Node.js 20 or newer from the Node.js project's packages"
command -v npm >/dev/null 2>&1 || die "npm not found (it comes with Node.js)"
rules_lock_stamp=$RULES_TESTS_DIR/node_modules/.funnelflow-lock.sha256
rules_lock_sum=$(cat "$RULES_TESTS_DIR/package.json" "$RULES_TESTS_DIR/package-lock.json" | sha256sum)
if [[ ! -f $rules_lock_stamp || $(<"$rules_lock_stamp") != "$rules_lock_sum" ]]; then
  log "npm ci in tests/rules"
  # --ignore-scripts: the SDK's only install script is optional web-app auto-config.
  npm ci --prefix "$RULES_TESTS_DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2 ||
    die "npm ci in tests/rules failed"
  printf '%s\n' "$rules_lock_sum" >"$rules_lock_stamp"
fi
