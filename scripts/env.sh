# Source this file to use the project's venv, the built interfaces and a loopback-only DDS.
#   source scripts/env.sh
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps every DDS packet on loopback. On a robot
# workstation that must talk to other hosts, set it to SUBNET after sourcing (see README).
_HI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV="$_HI_ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
_HI_IFACE="$_HI_ROOT/install/humanoid_inspection_interfaces"
export AMENT_PREFIX_PATH="$_HI_IFACE:$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PYTHONPATH="$_HI_IFACE/lib/python3.11/site-packages${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$_HI_IFACE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Fast DDS: 16 MiB shared-memory segments (a depth image does not fit the default 512 KiB and
# was lost as UDP fragments under load), UDP on loopback only; see the file's comment
if [ "$ROS_AUTOMATIC_DISCOVERY_RANGE" = "LOCALHOST" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_HI_ROOT/config/fastdds_localhost.xml}"
fi
export MUJOCO_GL="${MUJOCO_GL:-osmesa}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-osmesa}"
unset _HI_ROOT _HI_IFACE
