#!/usr/bin/env python3
"""Reads a Docker < 25 `docker save` archive on stdin and prints where the
image's top layer directory comes among the layer directories, as
"INDEX COUNT" (0-based; INDEX == COUNT - 1: the top layer is listed last).

dockerd 20.10 lists `<v1 id>/` directories by hash, so the order changes with
every build; scripts/bench.sh uses this to pick the worst order for the
changed-layer scenario. The top layer is the one no other layer names as its
`parent` in its `json`. Prints "-1 COUNT" when that is not exactly one."""
import json
import sys
import tarfile

order, parents = [], set()
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as archive:
    for member in archive:
        directory, _, name = member.name.partition("/")
        if name == "json" and member.isfile():
            order.append(directory)
            parent = json.load(archive.extractfile(member)).get("parent")
            if parent:
                parents.add(parent)
top = [directory for directory in order if directory not in parents]
print(order.index(top[0]) if len(top) == 1 else -1, len(order))
