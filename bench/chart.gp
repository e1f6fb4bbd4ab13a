# Draws bash scripts/bench.sh's chart: every shape's ratio to its floor with
# its goal, and the queue push latency distribution. Called as
#   gnuplot -e "data='DIR'; out='FILE.svg'; title='...'" bench/chart.gp
if (!exists("term")) term = "svg"
if (term eq "png") set terminal png size 1000,900; else set terminal svg size 1000,900 dynamic font "sans,11" background "white"
set termoption noenhanced
set output out
set multiplot layout 2,1 title title font ",13" margins 0.08,0.95,0.07,0.93 spacing 0.24

set title "Each shape's throughput as a ratio to its floor (higher is better; marks: the goal)"
set style fill solid 0.8 border -1
set boxwidth 0.6
set xrange [-0.6:*]
set yrange [0:2]
set rmargin 8
set grid ytics
set xtics rotate by -35 left font ",9"
set ylabel "ratio to floor"
set key top left horizontal
plot data."/ratios.dat" using 0:2:xtic(1) with boxes title "emmap / floor" linecolor rgb "#4a7fb5", \
     "" using 0:3 with points pointtype 9 pointsize 1.6 linecolor rgb "#c0392b" title "goal", \
     1 with lines dashtype 2 linecolor rgb "#555555" title "1.0x"

set title "Queue push latency, {event, 12345, <<\"payload\">>}, one VM (log scale)"
set xtics norotate font ",10"
set logscale y
set format y "%.0s%c"
set xlabel "quantile"
set ylabel "ns"
set xrange [0:1]
set yrange [*:*]
plot data."/push_latency.dat" using 1:2 with lines linewidth 2 linecolor rgb "#2e8b57" title "push latency"
unset multiplot
