#!/usr/bin/env bash
# Developer loop without reinstalling: build the extension into build/dev and drop it next to the sources,
# then `PYTHONPATH=python pytest`. Users install with `pip install .` instead (see README).
set -euo pipefail
cd "$(dirname "$0")"
py=${PYTHON:-python}
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
  -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" "$@" >/dev/null
cmake --build build/dev
cp build/dev/_core*.so python/hyperchroma/
