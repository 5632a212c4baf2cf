"""`colorize serve`: the job, the Ray Serve application, the request rules."""
