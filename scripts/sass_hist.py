#!/usr/bin/env python3
"""sass_hist.py — opcode histogram of the kernels in `cuobjdump -sass` output whose
name contains a string: how many FFMA, FSEL, HGMMA, ... each holds (static counts),
to see what a kernel's inner loop is made of.
usage: cuobjdump -sass OBJ > k.sass; scripts/sass_hist.py k.sass NAME_PART"""
import re, sys, collections
txt = open(sys.argv[1]).read()
want = sys.argv[2]
funcs = re.split(r'\n\s*Function : ', txt)
for f in funcs[1:]:
    name = f.split('\n', 1)[0].strip()
    if want not in name: continue
    ops = collections.Counter()
    for m in re.finditer(r'/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_.]+)', f):
        ops[m.group(2).split('.')[0]] += 1
    print(name, sum(ops.values()))
    print(' '.join('%s:%d' % kv for kv in ops.most_common(40)))
