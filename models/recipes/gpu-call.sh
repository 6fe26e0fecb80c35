#!/usr/bin/env bash
# One logit-distillation run that fits a single call of a lent GPU machine (15 minutes of device time in all,
# at most 10 minutes a command, 64 MiB carried with the checkout): the card's round 12, prepared in session 21
# and not run there (no machine was lent at the time). Two steps:
#
#   bash models/recipes/gpu-call.sh prepare         # here: build/gpu/ (pack, teacher, wheels), about 3 minutes
#   # move the repository's shared/ (coco128, 43 MiB) out of the checkout for the call: it travels otherwise
#   device run: HOURS=0.12 GUARD=520 bash models/recipes/gpu-call.sh run
#               carry: build/gpu/set45 build/gpu/whl build/gpu/teacher.pt      (timeout 600 s)
#
# prepare: the stage 5 replay set (datasets/gridpatrol-street-replay.yaml) packed at WebP quality 45 (quality 50
# and the checkout come to over 64 MiB), its val split cut to 30 photos (nothing is chosen on it), the COCO
# teacher copied, the ultralytics wheel and its thop wheel downloaded (the GPU image has torch, not ultralytics).
# run: from the shipped weights (BASE), AdamW (30 planned epochs), batch 32 at 480 for HOURS, stopped by GUARD
# seconds whatever happens; the EMA weights exported at the first epoch end at or past each of SNAPS, and at the
# end; everything written to $OUT (at most 8 files come back): x.pt, x-eN.pt, results.csv, args.yaml, logs.
set -uo pipefail
G=build/gpu
case "${1:-}" in
prepare)
    py=${PYTHON:-.venv/bin/python}
    shared=${SHARED:-../shared}
    rm -rf "$G/set45" "$G/whl" && mkdir -p "$G/whl" || exit 1
    "$py" -m api.cli -q dataset build datasets/gridpatrol-street-replay.yaml || exit 1
    "$py" -m api.cli -q dataset pack build/datasets/gridpatrol-street-replay/data.yaml --out "$G/set45" \
        --quality 45 || exit 1
    ls "$G/set45/images/val" | sort | tail -n +31 | while read -r photo; do
        rm "$G/set45/images/val/$photo" && rm -f "$G/set45/labels/val/${photo%.webp}.txt"
    done
    cp "$shared/weights/yolo26n-coco.pt" "$G/teacher.pt" || exit 1
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d "$G/whl" "ultralytics==$("$py" -c 'import ultralytics as u; print(u.__version__)')" \
        "ultralytics-thop==$("$py" -c 'import importlib.metadata as m; print(m.version("ultralytics-thop"))')" || exit 1
    du -sh --apparent-size "$G/set45" "$G/whl" "$G/teacher.pt"
    exit 0
    ;;
run) ;;
*) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
t0=$(date +%s)
SET=${SET:-$G/set45} BASE=${BASE:-models/gridpatrol-n.pt} HOURS=${HOURS:-0.12} GUARD=${GUARD:-520}
DEVICE=${DEVICE:-0} WORKERS=${WORKERS:-14} SNAPS=${SNAPS:-8,14,20} BATCH=${BATCH:-32} IMGSZ=${IMGSZ:-480}
OUT=${OUT:-/tmp/gpu-call-out}; mkdir -p "$OUT"
py=${PYTHON:-python3}
if [ -d "$G/whl" ] && ! "$py" -c "import ultralytics" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$G"/whl/*.whl || exit 3
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 YOLO_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
"$py" -c "import torch, ultralytics, cv2; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__, \
'cuda', torch.cuda.is_available())" || exit 4
runs=/tmp/gpu-call-runs
run=$runs/x
rm -rf "$runs"
"$py" - "$run/weights/last.pt" "$OUT" "$SNAPS" > "$OUT/snapshots.log" 2>&1 <<'PY' &
import os, shutil, sys, time
import torch
from detect.model.training import export_weights
last, out, snaps = sys.argv[1], sys.argv[2], {int(s) for s in sys.argv[3].split(",")}
seen = -1.0
while snaps:
    time.sleep(2)
    try:
        mtime = os.path.getmtime(last)
        if mtime == seen:
            continue
        time.sleep(1)  # ultralytics writes last.pt whole; let a write in progress end
        shutil.copy(last, "/tmp/gpu-call-snap.pt")
        epoch = int(torch.load("/tmp/gpu-call-snap.pt", map_location="cpu", weights_only=False)["epoch"]) + 1
        seen = mtime
    except Exception as exc:
        print("not yet:", exc, flush=True)
        continue
    due = {s for s in snaps if s <= epoch}
    if due:
        export_weights("/tmp/gpu-call-snap.pt", f"{out}/x-e{epoch}.pt")
        print("snapshot epoch", epoch, time.strftime("%T"), flush=True)
        snaps -= due
PY
watcher=$!
echo "=== train from $BASE at $(date -u +%T) (+$(( $(date +%s) - t0 )) s)"
timeout "$GUARD" "$py" -m api.cli train --data "$SET/data.yaml" --base "$BASE" --no-calibrate-bn \
    --teacher "$G/teacher.pt" --distill logits --imgsz "$IMGSZ" --batch "$BATCH" --workers "$WORKERS" \
    --device "$DEVICE" --hours "$HOURS" --epochs 30 --project "$runs" --name x > "$OUT/train.log" 2>&1
echo "=== train rc $? at $(date -u +%T) (+$(( $(date +%s) - t0 )) s)"
kill "$watcher" 2>/dev/null
"$py" -c "import sys; from detect.model.training import export_weights; export_weights(*sys.argv[1:])" \
    "$run/weights/last.pt" "$OUT/x.pt"
cp "$run/results.csv" "$run/args.yaml" "$OUT/" 2>/dev/null
grep -v "it/s]\|s/it]" "$OUT/train.log" | tail -30
cut -c1-160 "$OUT/results.csv" 2>/dev/null
grep -v "not yet" "$OUT/snapshots.log"
ls -la "$OUT"
echo "=== done +$(( $(date +%s) - t0 )) s"
