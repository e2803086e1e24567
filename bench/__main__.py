"""``make bench``: every benchmark, each printing its figures and its ratio to the physical limit
measured in the same run. Results are also written to ``.bench/<name>.json``."""

import sys

from bench import (
    bench_billing,
    bench_bus,
    bench_codec,
    bench_console,
    bench_e2e,
    bench_edge,
    bench_events,
    bench_ingest,
    bench_large,
    bench_parser,
    bench_pexip,
    bench_recordings,
    bench_replay,
    bench_spool,
    bench_stats,
    bench_store,
    instructions,
)

BENCHES = {
    "parser": bench_parser.main,
    "ingest": bench_ingest.main,
    "large": bench_large.main,
    "spool": bench_spool.main,
    "store": bench_store.main,
    "replay": bench_replay.main,
    "billing": bench_billing.main,
    "bus": bench_bus.main,
    "codec": bench_codec.main,
    "console": bench_console.main,
    "recordings": bench_recordings.main,
    "stats": bench_stats.main,
    "events": bench_events.main,
    "edge": bench_edge.main,
    "pexip": bench_pexip.main,
    "e2e": bench_e2e.main,
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(BENCHES)
    if chosen[0] == "e2e":  # python -m bench e2e [distributed|allinone]
        bench_e2e.main(chosen[1:] or None)
    elif chosen[0] == "instr":  # python -m bench instr [N]: callgrind, not in the default run
        instructions.main(chosen[1:])
    else:
        for name in chosen:
            BENCHES[name]()
