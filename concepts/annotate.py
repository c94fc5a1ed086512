"""`python -m concepts.annotate` (console script `concepts-annotate`): the annotation stage's command.
The stage itself is `concepts.annotation.stage` (its `run(cfg)` is what this command calls)."""

from concepts.annotation.stage import run
from concepts.core.cli import hydra_entry

main = hydra_entry("annotate", run)

if __name__ == "__main__":
    main()
