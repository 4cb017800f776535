"""Rewrite the build-machine paths that the ROS 2 PyPI wheels hard-code in their CMake files.

The Kilted wheels export CMake config files that name the wheel builder's Python include
directory and numpy include directory. A message package that depends on another message
package then fails at CMake generate time ("includes non-existent path"). This rewrites those
two prefixes to this virtual environment's real paths. Idempotent: files already fixed are left
alone. Only files inside the given venv are touched.

Usage: python scripts/fix_ros_cmake_paths.py VENV_DIR
"""

import pathlib
import sys
import sysconfig

import numpy

BAD_NUMPY = '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include'
BAD_PYTHON = '/opt/python/cp311-cp311/include/python3.11'


def fix(venv: pathlib.Path) -> int:
    """Rewrite the bad prefixes under venv/share/*/cmake; return the number of files changed."""
    replacements = {
        BAD_NUMPY: numpy.get_include(),
        BAD_PYTHON: sysconfig.get_paths()['include'],
    }
    changed = 0
    for path in sorted(venv.glob('share/*/cmake/*.cmake')):
        text = path.read_text()
        new = text
        for bad, good in replacements.items():
            new = new.replace(bad, good)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    n = fix(pathlib.Path(sys.argv[1]))
    print(f'[setup] fixed CMake paths in {n} file(s)')
