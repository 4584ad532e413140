#!/usr/bin/env python3
"""A synthetic trace with a day's rhythm, for the trace evaluator on a load that rises and
falls: nothing here is recorded, so use it beside real traces, not instead of them.

  python3 bench/workloads/diurnal-synth.py 430000 86400 /tmp/day.csv
  npm run bench:traces -- --trace /tmp/day.csv --interval 300,3600 --link-x 2

WRITES writes over SECONDS, in the MSR Cambridge CSV layout (disk 0): 30 % a log appended
round 1 GiB in 8 KiB writes, 50 % a hot set (Pareto-distributed block numbers over 8 GiB:
some blocks rewritten many times an hour, most rarely), 20 % random writes over 64 GiB that
are hardly ever rewritten. The write rate follows the time of day, from 0.15 of its peak at
night to the peak at noon. With a link of 2x the mean write rate the link is short at the
peak for every policy, the oracle too; a planner has to start early enough on the morning's
ramp, when the last interval's rate understates what is coming. Seeded: every run writes alike.
"""
import math, random, sys

if len(sys.argv) != 4:
    sys.exit('usage: diurnal-synth.py WRITES SECONDS OUT.csv')
writes, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
random.seed(7)
EPOCH = 128166372000000000  # a Windows 100 ns timestamp (2007), as the MSR traces have
GiB = 1 << 30

# Times: uniform, thinned by the time of day (a rejection sample), then sorted.
times = []
while len(times) < writes:
    t = random.random() * seconds
    hour = (t / 3600) % 24
    if random.random() < 0.15 + 0.85 * max(0.0, math.sin((hour - 6) / 24 * 2 * math.pi)):
        times.append(t)
times.sort()

log_head = 0
with open(out, 'w') as f:
    for t in times:
        r = random.random()
        if r < 0.3:
            offset, size = 64 * GiB + log_head % GiB, 8192
            log_head += size
        elif r < 0.8:
            block = int(2_000_000 * (random.paretovariate(1.2) - 1) / 50) % 2_000_000
            offset, size = block * 4096, 4096 * random.choice([1, 1, 1, 2, 4])
        else:
            offset, size = random.randrange(0, 64 * GiB, 4096), 4096 * random.choice([1, 2, 16])
        f.write(f'{EPOCH + int(t * 1e7)},synth,0,Write,{offset},{size},100\n')
