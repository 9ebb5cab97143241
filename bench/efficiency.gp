# The efficiency figure of BENCHMARKS.md: CPU seconds per independent sample, GFN2-xTB MD
# against psm, per molecule (log scale). The numbers come from bench/efficiency.dat, which
# BENCHMARKS.md derives row by row from the commands it lists.
#   gnuplot bench/efficiency.gp              # -> docs/figures/efficiency.png
set terminal pngcairo size 900,600 font ",12"
set output "docs/figures/efficiency.png"
set title "Cost of one independent sample (one core)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set format y "10^{%L}"
set ylabel "CPU seconds per independent sample"
set grid ytics mytics
set key outside below maxrows 2
set yrange [*:*]
plot "bench/efficiency.dat" using 2:xtic(1) title columnheader(2), \
     "" using 3 title columnheader(3), \
     "" using 4 title columnheader(4), \
     "" using 5 title columnheader(5)
