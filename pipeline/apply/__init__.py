"""A trained model applied to photos: `colorize infer`, `colorize eval`, `colorize export`, and the
shared frame of jobs with one output per input."""
