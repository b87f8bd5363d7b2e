"""The options of every command that sounds or writes a score's notes (``hs export``,
``hs render``, ``hs play``) to keep or leave out the callers on a schedule; what they
select is :func:`.rhythm.selected`. Kept apart so that declaring them imports no numpy."""

from typing import Annotated, Optional

import typer

Only = Annotated[Optional[str], typer.Option(
    "--only", metavar="periodic", show_default=False,
    help="Only the notes of the callers that keep a schedule (hs rhythm lists them): the heartbeat alone.")]
Except = Annotated[Optional[str], typer.Option(
    "--except", metavar="periodic", show_default=False,
    help="Every note but theirs: the network without its heartbeat.")]
