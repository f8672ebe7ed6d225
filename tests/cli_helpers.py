"""Running the CLI in-process, as the CLI tests do."""
from retrograd.cli import main


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``retrograd ARGV``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    """The one line of a CLI error (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
