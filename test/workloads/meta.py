"""A deterministic create/rename/unlink workload under ROOT with names prefixed PREFIX.
Running it on a local directory gives the namespace it must produce anywhere."""
import os, sys

root, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k in range(5):
    os.makedirs(os.path.join(root, 'd%d' % k), exist_ok=True)
alive = []
for i in range(n):
    p = os.path.join(root, 'd%d' % (i % 5), '%s%d' % (prefix, i))
    with open(p, 'w') as f:
        f.write('%s %d\n' % (prefix, i) * (i % 17 + 1))
    alive.append(p)
    if i % 3 == 2:
        q = os.path.join(root, 'd%d' % ((i + 1) % 5), '%sr%d' % (prefix, i))
        os.rename(alive.pop(0), q)
        alive.append(q)
    if i % 7 == 6:
        os.unlink(alive.pop(len(alive) // 2))
    if i % 11 == 10:
        # rename over an existing name
        os.rename(alive[-1], alive[0])
        alive.pop()
