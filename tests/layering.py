#!/usr/bin/python3
"""The one-way rule of src/: no two modules call each other in a loop.

Reads `nm` of libpromfork (one object per src/*.c), builds the graph "file A
uses a symbol that file B defines" and fails, naming the loop, when the graph
has a cycle of any length.  Data flows sources -> registry -> sinks, with the
support modules below everything; a loop means two modules each need the
other, so neither can be read, tested or changed alone.

    layering.py LIBPROMFORK.a        check the library
    layering.py --self-test          check that a planted loop is caught
"""
import os
import subprocess
import sys

# Edges (caller, callee) allowed to close a loop, each with its reason, e.g.
#   ("log", "xmalloc"): "the log formats with xvasprintf",
# Today there are none; keep it that way, or keep it short.
ALLOWED = {}


def modules_of(archive):
    """{module: (defined symbols, undefined symbols)} from nm's listing."""
    out = subprocess.run(["nm", archive], check=True, capture_output=True,
                         text=True).stdout
    mods, cur = {}, None
    for line in out.splitlines():
        if line.endswith(".o:"):
            name = os.path.basename(line[:-1])
            for suffix in (".c.o", ".o"):
                if name.endswith(suffix):
                    name = name[:-len(suffix)]
                    break
            cur = mods.setdefault(name, (set(), set()))
            continue
        parts = line.split()
        if cur is None or len(parts) < 2:
            continue
        kind, sym = parts[-2], parts[-1]
        if kind == "U":
            cur[1].add(sym)
        elif kind in "TDBRVWG":  # global definitions only
            cur[0].add(sym)
    return mods


def graph_of(mods):
    """{module: {module it uses: [a symbol that shows it]}}"""
    owner = {}
    for mod, (defined, _) in mods.items():
        for sym in defined:
            owner[sym] = mod
    graph = {mod: {} for mod in mods}
    for mod, (_, undefined) in mods.items():
        for sym in sorted(undefined):
            dep = owner.get(sym)
            if dep is not None and dep != mod and (mod, dep) not in ALLOWED:
                graph[mod].setdefault(dep, sym)
    return graph


def find_cycle(graph):
    """One cycle as a list of modules [a, b, ..., a], or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = {m: WHITE for m in graph}
    stack = []

    def visit(m):
        color[m] = GREY
        stack.append(m)
        for dep in sorted(graph[m]):
            if color[dep] == GREY:
                return stack[stack.index(dep):] + [dep]
            if color[dep] == WHITE:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[m] = BLACK
        return None

    for m in sorted(graph):
        if color[m] == WHITE:
            found = visit(m)
            if found:
                return found
    return None


def describe(graph, cycle):
    steps = ["%s.c calls %s (%s.c)" % (a, graph[a][b], b)
             for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(m + ".c" for m in cycle) + "\n  " + "\n  ".join(steps)


def self_test():
    """A loop of three planted among one-way modules must be caught."""
    mods = {
        "registry": ({"registry_lease"}, {"pool_take", "log_warn"}),
        "pool": ({"pool_take"}, set()),
        "log": ({"log_warn"}, set()),
        "api": ({"api_create"}, {"registry_lease", "mirror_flush"}),
        "mirror": ({"mirror_flush"}, {"sdfile_render"}),
        "sdfile": ({"sdfile_render"}, {"api_create"}),
    }
    cycle = find_cycle(graph_of(mods))
    if cycle is None or set(cycle) != {"api", "mirror", "sdfile"}:
        print("self-test: the planted loop was not found: %r" % (cycle,))
        return 1
    mods["sdfile"] = ({"sdfile_render"}, set())
    if find_cycle(graph_of(mods)) is not None:
        print("self-test: a one-way graph was called a loop")
        return 1
    print("self-test: planted loop found: " + " -> ".join(cycle))
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--self-test":
        return self_test()
    if len(argv) != 2:
        print(__doc__)
        return 2
    mods = modules_of(argv[1])
    if len(mods) < 2:
        print("no objects in %s" % argv[1])
        return 1
    graph = graph_of(mods)
    cycle = find_cycle(graph)
    if cycle is not None:
        print("modules call each other in a loop: " + describe(graph, cycle))
        return 1
    edges = sum(len(d) for d in graph.values())
    print("%d modules, %d one-way dependencies, no loop" % (len(graph), edges))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
