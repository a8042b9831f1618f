# ptxas_summary.awk — one line per kernel from nvcc -Xptxas -v output: arch, registers, spill bytes, name.
/Compiling entry function/ { match($0, /'[^']*'/); fn = substr($0, RSTART+1, RLENGTH-2); match($0, /for '[^']*'/); arch = substr($0, RSTART+5, RLENGTH-6) }
/spill stores/ { split($0, a, ","); st = a[2]; ld = a[3]; gsub(/^ +| bytes spill (stores|loads)/, "", st); gsub(/^ +| bytes spill (stores|loads)/, "", ld) }
/Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); r = substr($0, RSTART+5, RLENGTH-15); printf "%-7s regs %3d  spill st %s ld %s  %s\n", arch, r, st, ld, fn }
