#!/usr/bin/env bash
# Set up (if needed) and run the simulated inspection cell end to end.
# Extra arguments go to `humanoid-inspection demo` (see --help), e.g. --parts 8 --seed 3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
cd "$ROOT"
exec humanoid-inspection demo "$@"
