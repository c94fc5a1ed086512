"""`python -m concepts.discover` (console script `concepts-discover`): the discovery stage's command.
The stage itself is `concepts.discovery.stage` (its `run(cfg)` is what this command calls)."""

from concepts.core.cli import hydra_entry
from concepts.discovery.stage import run

main = hydra_entry("discover", run)

if __name__ == "__main__":
    main()
