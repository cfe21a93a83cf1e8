#!/usr/bin/env bash
# The README's first sample must be examples/hello/hello.cpp, verbatim.
set -euo pipefail
root="$1"
sample=$(awk '/<!-- sample: examples\/hello\/hello.cpp -->/{on=1; next}
              /<!-- end sample -->/{on=0}
              on' "$root/README.md" | sed '1d;$d')
if ! diff -u "$root/examples/hello/hello.cpp" <(printf '%s\n' "$sample"); then
  echo "README.md's sample differs from examples/hello/hello.cpp" >&2
  exit 1
fi
echo "README sample matches examples/hello/hello.cpp"
