"""The `admap` command line: flags are generated from each command's config dataclass."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from admap.commands import commands
from admap.config import add_arguments, from_arguments
from admap.errors import InputError
from admap.memory import use_system_memory_pool
from admap.provenance import admap_version
from admap.registry import load_plugins
from admap.run_folder import RunFolderBusy


def build_parser() -> argparse.ArgumentParser:
    # Installed packages' scorers, formats, generators and strategies register before the flags are made.
    load_plugins()
    parser = argparse.ArgumentParser(prog="admap", description="Alignment Data Maps of LLM preference data.")
    parser.add_argument("--version", action="version", version=f"admap {admap_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in commands().items():
        config_class = command.config
        # A command whose choices are registered at run time (scorers, strategies) lists them in an epilog.
        epilog = config_class.epilog() if hasattr(config_class, "epilog") else None
        sub = subparsers.add_parser(name, help=command.help, description=config_class.__doc__, epilog=epilog)
        sub.add_argument("--config", help="YAML file of defaults for these flags (flags win; unknown keys refused)")
        sub.add_argument(
            "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars; warnings and errors only"
        )
        add_arguments(sub, config_class)
    return parser


def _silence_libraries() -> None:
    """--quiet also hides the progress bars that transformers and the hub draw while loading models."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    namespace = parser.parse_args(argv)
    quiet = getattr(namespace, "quiet", False)
    if hasattr(namespace, "quiet"):
        del namespace.quiet
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    use_system_memory_pool()
    # The openai package's HTTP client logs every request at INFO: one line per call drowns the progress bar.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if quiet:
        _silence_libraries()
    command = commands()[namespace.command]
    command_line = shlex.join(["admap", *(sys.argv[1:] if argv is None else argv)])
    try:
        config = from_arguments(command.config, namespace)
        print(command.run(config, progress=not quiet, command=command_line))
    except (
        InputError,
        ValueError,
        KeyError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        RunFolderBusy,
    ) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        logging.getLogger("admap").error("%s", message)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
