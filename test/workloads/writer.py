"""Write deterministic 128 KiB blocks to a file for N seconds, fsync every 16 blocks; print the
running sha256, the block count and the longest single write+fsync in seconds."""
import hashlib, os, sys, time

path, seconds = sys.argv[1], float(sys.argv[2])
h = hashlib.sha256()
worst = 0.0
blk = 0
end = time.time() + seconds
with open(path, 'wb') as f:
    while time.time() < end:
        data = hashlib.sha256(str(blk).encode()).digest() * 4096
        t = time.time()
        f.write(data)
        f.flush()
        if blk % 16 == 15:
            os.fsync(f.fileno())
        worst = max(worst, time.time() - t)
        h.update(data)
        blk += 1
    os.fsync(f.fileno())
print(h.hexdigest(), blk, round(worst, 2))
