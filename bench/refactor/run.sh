#!/usr/bin/env bash
# Before/after the library-core move, back to back on one machine: the pre-move commit (6a24f3c) and this tree,
# alternated REPS times so drift of a shared machine shows up as spread instead of as a difference.
# Also checks that both trees write the same pixels (image: ort and openvino fp32; video: ort, --crf 0).
# Usage (repo root, after `make setup`): bash bench/refactor/run.sh [REPS]   -- writes bench/refactor/*.json
set -euo pipefail
REPS=${1:-3}
ROOT=$(pwd)
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WORK/src" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git -C "$ROOT" worktree add -f "$WORK/src" 6a24f3c >/dev/null 2>&1
# The old tree's subpackages live in top-level folders too: a link tree puts each where its name says.
mkdir -p "$WORK/pkg/ghostrt" "$WORK/run"
for f in "$WORK"/src/ghostrt/*; do ln -s "$f" "$WORK/pkg/ghostrt/"; done
for d in runtime export calibration weights; do ln -s "$WORK/src/$d" "$WORK/pkg/ghostrt/$d"; done
ln -s "$ROOT/engines" "$WORK/run/engines"; ln -s "$ROOT/weights" "$WORK/run/weights"
old() { (cd "$WORK/run" && PYTHONPATH="$WORK/pkg" "$PY" -m ghostrt.cli "$@"); }
new() { "$PY" -m ghostrt.cli "$@"; }
ARGS=(bench --skip-reference --no-floor --frames 8 --batch 1,4 --backend openvino --precision fp32)
for i in $(seq "$REPS"); do
  old "${ARGS[@]}" --out-dir "$WORK/out/before$i" | grep -E '^(image|webcam|video|file) ' | sed "s/^/before$i /"
  new "${ARGS[@]}" --out-dir "$WORK/out/after$i" | grep -E '^(image|webcam|video|file) ' | sed "s/^/after$i  /"
done
SRC=$("$PY" -c "import matplotlib,pathlib;print(pathlib.Path(matplotlib.get_data_path())/'sample_data/grace_hopper.jpg')")
TGT=$("$PY" -c "import skimage,pathlib;print(pathlib.Path(skimage.__file__).parent/'data/astronaut.png')")
"$PY" bench/refactor/summarise.py clip "$WORK/out/clip.mp4"
for be in ort openvino; do
  for tree in old new; do
    $tree swap image --source "$SRC" --target "$TGT" --backend $be --precision fp32 \
      --output "$WORK/out/$tree-$be.png" >/dev/null
  done
done
for tree in old new; do
  $tree swap video --source "$SRC" --target "$WORK/out/clip.mp4" --backend ort --precision fp32 --crf 0 \
    --output "$WORK/out/$tree-ort.mp4" >/dev/null
done
"$PY" bench/refactor/summarise.py summary "$WORK/out" bench/refactor
