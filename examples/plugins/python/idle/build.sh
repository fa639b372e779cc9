#!/bin/sh
# Builds this plugin into the component $1 with componentize-py
# (`pip install componentize-py==0.25.1`). Exits 77 when it is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$1")
command -v componentize-py >/dev/null || {
    echo "componentize-py is not installed: pip install componentize-py==0.25.1" >&2
    exit 77
}
cd "$here"
componentize-py -d ../../../../wit -w idle-plugin componentize app -o "$out"
