"""An external server for pooldrop: it averages the numeric arrays of each group into one result.

Each input is a JSON array of numbers or a text file of whitespace-separated numbers; the result
is a JSON array: the element-wise mean (arrays of different lengths are averaged over the values
present at each position).

Two ways to run it:

1. As a long-running SDK aggregator (claims groups, heartbeats its lease, publishes results)::

       python examples/aggregator.py run --server http://127.0.0.1:8000 \\
           --key <aggregator key> --pool <pool_id> [--once]

2. As the command behind ``pooldrop aggregate``, which does the claiming for it::

       pooldrop aggregate --pool <pool_id> --result-name mean.json \\
           --exec 'python examples/aggregator.py compute --output {output} {inputs}'
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from pooldrop.client import Aggregator, Client, Job


def read_numbers(path: Path) -> list[float]:
    text = path.read_text()
    try:
        value = json.loads(text)
    except ValueError:
        return [float(x) for x in text.split()]
    if not isinstance(value, list):
        raise ValueError(f"{path.name}: expected a JSON array of numbers")
    return [float(x) for x in value]


def mean_of(paths: Sequence[Path]) -> list[float]:
    """The element-wise mean of every file's numbers."""
    sums: list[float] = []
    counts: list[int] = []
    for path in paths:
        for i, x in enumerate(read_numbers(path)):
            if i == len(sums):
                sums.append(0.0)
                counts.append(0)
            sums[i] += x
            counts[i] += 1
    return [s / n for s, n in zip(sums, counts, strict=True)]


def compute(job: Job) -> None:
    job.output.write_text(json.dumps(mean_of(job.inputs)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    run = sub.add_parser("run", help="claim and process groups with the SDK")
    run.add_argument("--server", required=True)
    run.add_argument("--key", required=True, help="a pool key with the aggregator role")
    run.add_argument("--pool", required=True)
    run.add_argument("--once", action="store_true", help="process one group, then exit")
    run.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a group")
    one = sub.add_parser("compute", help="average INPUTS into --output (for --exec)")
    one.add_argument("--output", type=Path, required=True)
    one.add_argument("inputs", type=Path, nargs="+")
    args = parser.parse_args()

    if args.mode == "compute":
        args.output.write_text(json.dumps(mean_of(args.inputs)))
        return
    with Client(args.server, api_key=args.key) as client:
        agg = Aggregator(client, args.pool, compute, wait=args.wait, result_name="mean.json")
        if args.once:
            while (result := agg.run_once()) is None:
                pass
            print(f"published {result.result_id} for group {result.group_id}")
        else:
            agg.run()


if __name__ == "__main__":
    main()
