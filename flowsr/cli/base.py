"""What every command's parser shares: one-line errors, the help layout, the sub-parser factory."""

from __future__ import annotations

import argparse

from flowsr.cli.errors import UsageError

__all__ = ["PROG", "Formatter", "Parser", "command"]

PROG = "flowsr"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) that ``main`` reports like every other error."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description/epilog layout; appends "(default: X)" where a default is worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and "(default" not in text
            and default is not None
            and default is not False
            and default != ""
            and default is not argparse.SUPPRESS
            and action.option_strings
            and action.nargs != 0
        ):
            shown = (
                " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
                if isinstance(default, list)
                else default
            )
            text += f" (default: {shown})"
        return text


def command(sub, name: str, help_: str, epilog: str, parents: list) -> argparse.ArgumentParser:
    """A sub-parser with flowsr's formatter and one-line errors."""
    return sub.add_parser(
        name, help=help_, description=help_ + ".", epilog=epilog, parents=parents, formatter_class=Formatter
    )
