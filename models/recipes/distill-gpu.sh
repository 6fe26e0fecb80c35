#!/usr/bin/env bash
# Stage 6 candidates (models/MODEL_CARD.md, "Logit distillation on a GPU"): two runs of the same recipe
# on a machine that has this checkout, a packed set and the COCO weights, nothing else:
#   run "base":    from the COCO model (its identity BatchNorms calibrated first), as stage 1 started;
#   run "shipped": from the shipped weights (models/gridpatrol-n.pt), which know garbage already.
# Both distil the COCO model's class scores and boxes on every anchor (--distill logits) for the nine
# kinds it shares with ours, and train for a fixed time each (the schedule fits itself to it).
#
#   gridpatrol dataset build datasets/gridpatrol-street-replay.yaml
#   gridpatrol dataset pack build/datasets/gridpatrol-street-replay/data.yaml --out SET --quality 75
#   bash models/recipes/distill-gpu.sh SET COCO_WEIGHTS OUT MINUTES_PER_RUN [DEVICE]
#
# The planned epochs (EPOCHS, default 12) matter beyond the schedule: ultralytics' automatic optimizer is
# AdamW (lr 0.000625 for 12 classes) up to 10,000 iterations and MuSGD (lr 0.01) past that, and the time
# limit re-plans the epochs only after that choice. RUN_NAMES picks the runs (default: both).
# OUT gets <run>.pt (the run's last epoch, EMA weights, fp16, stripped: the rule is fixed, not chosen on
# a validation set), <run>-results.csv (per epoch) and <run>-args.yaml.
set -euo pipefail
set_dir=$1 teacher=$2 out=$3 minutes=$4 device=${5:-0}
py=${PYTHON:-python3}
hours=$("$py" -c "print($minutes / 60)")
runs=${RUNS:-/tmp/gridpatrol-runs}
export PYTHONUNBUFFERED=1
for run in ${RUN_NAMES:-base shipped}; do
    if [ "$run" = base ]; then
        from=(--base "$teacher")
    else
        from=(--base models/gridpatrol-n.pt --no-calibrate-bn)
    fi
    echo "=== run $run: $(date -u +%T)"
    "$py" -m api.cli train --data "$set_dir/data.yaml" "${from[@]}" --teacher "$teacher" --distill logits \
        --imgsz 480 --batch "${BATCH:-32}" --workers "${WORKERS:-14}" --device "$device" --hours "$hours" \
        --epochs "${EPOCHS:-12}" --project "$runs" --name "$run"
    "$py" -c "import sys; from detect.model.training import export_weights; export_weights(*sys.argv[1:])" \
        "$runs/$run/weights/last.pt" "$out/$run.pt"
    cp "$runs/$run/results.csv" "$out/$run-results.csv"
    cp "$runs/$run/args.yaml" "$out/$run-args.yaml"
done
echo "=== done: $(date -u +%T)"
