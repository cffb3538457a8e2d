"""Per-window Redis command rates from the samples presence-redis-rate.sh takes.

Each window prints its end (seconds from the first sample), the total
commands per second, Redis's CPU (user + system, percent of one core) and
the rate of every command that ran in it.
"""
import re
import sys


def samples(path):
    found = []
    current = None
    for line in open(path):
        line = line.strip()
        if line.startswith("T "):
            current = {"t": float(line[2:]), "calls": {}, "cpu": 0.0}
            found.append(current)
        elif current is None:
            continue
        elif line.startswith("cmdstat_"):
            name, rest = line.split(":", 1)
            current["calls"][name[len("cmdstat_"):]] = int(re.search(r"calls=(\d+)", rest).group(1))
        elif line.split(":")[0] in ("used_cpu_sys", "used_cpu_user"):
            current["cpu"] += float(line.split(":")[1])
    return found


def main():
    taken = samples(sys.argv[1])
    for before, after in zip(taken, taken[1:]):
        seconds = after["t"] - before["t"]
        total = sum(after["calls"].values()) - sum(before["calls"].values())
        rates = {
            name: round((calls - before["calls"].get(name, 0)) / seconds, 1)
            for name, calls in after["calls"].items()
            if calls > before["calls"].get(name, 0)
        }
        cpu = 100 * (after["cpu"] - before["cpu"]) / seconds
        print(f"{after['t'] - taken[0]['t']:6.1f}s  total {total / seconds:8.1f}/s  cpu {cpu:5.1f}%  {rates}")


if __name__ == "__main__":
    main()
