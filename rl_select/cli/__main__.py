"""``python -m rl_select.cli`` is ``rl-select``."""

from rl_select.cli import main

main()
