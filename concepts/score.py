"""`python -m concepts.score` (console script `concepts-score`): the label scoring stage's command.
The stage itself is `concepts.annotation.score_stage` (its `run(cfg)` is what this command calls)."""

from concepts.annotation.score_stage import run
from concepts.core.cli import hydra_entry

main = hydra_entry("score", run)

if __name__ == "__main__":
    main()
