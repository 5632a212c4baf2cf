"""Grey-scale photo colorization on Ray: data, priors, training, tuning, inference."""


def _version() -> str:
    try:
        from importlib.metadata import version

        v = version("colorize")
    except Exception:
        v = "0+unknown"
    try:  # a source checkout: add the commit so provenance names the exact code
        import os
        import subprocess

        here = os.path.dirname(os.path.abspath(__file__))
        sha = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if sha:
            v = f"{v}+g{sha}"
    except Exception:
        pass
    return v


__version__ = _version()
