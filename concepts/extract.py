"""`python -m concepts.extract` (console script `concepts-extract`): the extraction stage's command.
The stage itself is `concepts.extraction.stage` (its `run(cfg)` is what this command calls)."""

from concepts.core.cli import hydra_entry
from concepts.extraction.stage import run

main = hydra_entry("extract", run)

if __name__ == "__main__":
    main()
