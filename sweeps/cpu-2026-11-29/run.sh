#!/bin/bash
# A: the old grid (doit trial tasks, -n 2) vs the Optuna grid (--workers 2), alternated; B: 24-trial grid vs 16-trial TPE, 1 worker
cd /tmp/meas
D=/work/main/.venv/bin/python
t() { local s=$(date +%s.%N); "$@" > "$LOG" 2>&1; local rc=$?; echo "$NAME rc=$rc wall=$(echo "$(date +%s.%N) - $s" | bc) load=$(cut -d' ' -f1 /proc/loadavg)"; }
for round in 1 2; do
  (cd old && rm -rf build .doit.db* && LOG=/tmp/meas/old$round.log NAME=old$round t $D -m doit -n 2 sweep)
  (cd new && rm -rf build sweeps HYPERPARAMETERS.md .doit.db* && LOG=/tmp/meas/new$round.log NAME=new$round t $D -m doit sweep --workers 2)
done
(cd grid && rm -rf build sweeps && LOG=/tmp/meas/grid.log NAME=grid t $D -m doit sweep --workers 1)
(cd tpe && rm -rf build sweeps && LOG=/tmp/meas/tpe.log NAME=tpe t $D -m doit sweep --workers 1)
echo DONE
