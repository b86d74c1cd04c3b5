#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Module include graph of lib/ (module = folder under lib/): print it, fail on a cycle or on
lib/base including anything of the project.

Edges come from every `#include "..."` in lib/**/*.c and *.h, resolved relative to the including
file (the tree's only form) or to lib/ (the form users of the library take). Includes inside one
module are not edges. Exit 0 when the graph is a DAG and base includes nothing; 1 otherwise, with
the cycle or the offending include named.

    scripts/check-includes.py [LIBDIR]      (default: lib/ next to this script)
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def module_of(lib, path):
    rel = os.path.relpath(path, lib)
    if rel.startswith('..') or os.sep not in rel:
        return None
    return rel.split(os.sep, 1)[0]


def graph(lib):
    edges = {}  # module -> {module: [(file, include), ...]}
    for root, _, files in os.walk(lib):
        for f in sorted(files):
            if not f.endswith(('.c', '.h')):
                continue
            path = os.path.join(root, f)
            src = module_of(lib, path)
            if src is None:
                continue
            edges.setdefault(src, {})
            with open(path, encoding='utf-8', errors='replace') as fh:
                text = fh.read()
            for inc in INCLUDE.findall(text):
                cands = [os.path.normpath(os.path.join(root, inc)), os.path.normpath(os.path.join(lib, inc))]
                target = next((c for c in cands if os.path.exists(c)), None)
                if target is None:
                    continue  # generated (flow.pb-c.h) or system header in quotes
                dst = module_of(lib, target)
                if dst is None or dst == src:
                    continue
                edges[src].setdefault(dst, []).append((os.path.relpath(path, lib), inc))
    return edges


def find_cycle(edges):
    """A cycle as a list of modules, or None (iterative DFS, colours)."""
    colour = {m: 0 for m in edges}
    for start in sorted(edges):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
                continue
            colour.setdefault(nxt, 0)
            edges.setdefault(nxt, {})
            if colour[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            if colour[nxt] == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(edges[nxt]))))
                path.append(nxt)
    return None


def layers(edges):
    """Modules by depth (0: includes no module), for printing a DAG bottom-up."""
    depth = {}

    def d(m):
        if m not in depth:
            depth[m] = 0
            depth[m] = 1 + max((d(n) for n in edges.get(m, {})), default=-1)
        return depth[m]

    for m in edges:
        d(m)
    return depth


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    lib = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, '..', 'lib'))
    edges = graph(lib)
    ok = True
    print(f'module include graph of {lib} (module -> modules it includes):')
    for m in sorted(edges):
        print(f'  {m:10s} -> {", ".join(sorted(edges[m])) or "(nothing)"}')
    if 'base' not in edges:
        print('check-includes: lib/base is missing')
        ok = False
    for dst, why in sorted(edges.get('base', {}).items()):
        ok = False
        for f, inc in why:
            print(f'check-includes: base must include nothing of the project: {f} includes "{inc}" ({dst})')
    cyc = find_cycle({k: dict(v) for k, v in edges.items()})
    if cyc:
        ok = False
        print('check-includes: cycle: ' + ' -> '.join(cyc))
        for a, b in zip(cyc, cyc[1:]):
            for f, inc in edges[a][b]:
                print(f'  {a} -> {b}: {f} includes "{inc}"')
    else:
        depth = layers(edges)
        print('layers (each includes only lower ones):')
        for lvl in range(max(depth.values(), default=-1) + 1):
            print(f'  {lvl}: {" ".join(sorted(m for m in depth if depth[m] == lvl))}')
    print('check-includes: ' + ('ok: no cycle, base includes nothing' if ok else 'FAILED'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
