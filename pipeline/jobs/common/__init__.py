"""What several jobs share: ``flags`` (the flag groups and typed option pieces), ``command_help``
(each command's description and examples), ``config_help`` (one line of help per config key),
``per_input`` (the skeleton of the jobs with one output per input), ``extras`` (the extra a command
misses in the light install)."""

__all__ = ["command_help", "config_help", "extras", "flags", "per_input"]
