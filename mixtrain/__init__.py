"""mixtrain's shared core: project config and loading, storage and the IO manager, identity hashing,
automation, the runner, the CLI and the terminal summary. The three domain packages (``mixassets`` →
``training_assets`` → ``eval_assets``) build on it; it imports none of them (the code location is loaded by
module name, :mod:`mixtrain.instance`)."""
