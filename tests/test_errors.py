"""selfinstruct.errors.user_errors: the one mapping from errors to what a user sees, shared by the CLI's
commands and train_sft's main()."""
from __future__ import annotations

import subprocess
import sys
import types

import pytest
from typer.testing import CliRunner

from selfinstruct.errors import INTERRUPTED, InputError, SelfInstructError, UsageError, user_errors


def test_a_user_error_is_one_line_and_exit_2_as_decorator_and_as_context_manager(capsys):
    @user_errors
    def command(x):
        raise InputError("no records", path="d.json", line=3)

    with pytest.raises(SystemExit) as e:
        command(1)
    assert (e.value.code, capsys.readouterr().err) == (2, "Error: d.json:3: no records\n")

    with pytest.raises(SystemExit) as e, user_errors():
        raise UsageError("--num must be at least 1 (got 0)")
    assert (e.value.code, capsys.readouterr().err) == (2, "Error: --num must be at least 1 (got 0)\n")


def test_an_interrupt_is_one_line_and_exit_130(capsys):
    with pytest.raises(SystemExit) as e, user_errors():
        raise KeyboardInterrupt
    assert (e.value.code, capsys.readouterr().err) == (130, INTERRUPTED + "\n")
    with pytest.raises(SystemExit) as e, user_errors(interrupted="Interrupted: resume=true"):
        raise KeyboardInterrupt
    assert (e.value.code, capsys.readouterr().err) == (130, "Interrupted: resume=true\n")


def test_show_false_exits_the_same_without_printing(capsys):
    with pytest.raises(SystemExit) as e, user_errors(show=False):
        raise SelfInstructError("boom")
    assert (e.value.code, capsys.readouterr().err) == (2, "")


def test_a_bug_keeps_its_traceback_and_success_passes_through(capsys):
    with pytest.raises(ZeroDivisionError), user_errors():
        1 / 0
    assert user_errors(lambda a, b=2: a + b)(1, b=3) == 4
    assert capsys.readouterr().err == ""


def test_the_wrapper_keeps_the_signature_typer_reads():
    import inspect

    def command(num: int, out: str = "o") -> None:
        """Help."""

    wrapped = user_errors(command)
    assert inspect.signature(wrapped) == inspect.signature(command) and wrapped.__doc__ == "Help."


def test_importing_errors_imports_nothing_heavy():
    code = ("import sys, selfinstruct.errors; "
            "print(sorted(m for m in ('typer', 'click', 'torch', 'yaml') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


# --- both entry points use it ---------------------------------------------------------------------


def _raising(error: BaseException):
    def fail(*args, **kwargs):
        raise error
    return fail


@pytest.fixture
def cli_raising(monkeypatch):
    """`selfinstruct generate` whose body raises: its Settings come from a stand-in selfinstruct.generate."""
    from selfinstruct.cli import app

    def invoke(error: BaseException, tmp_path):
        fake = types.ModuleType("selfinstruct.generate")
        fake.Settings, fake.run_generate = _raising(error), _raising(AssertionError("not reached"))
        monkeypatch.setitem(sys.modules, "selfinstruct.generate", fake)
        result = CliRunner().invoke(app, ["generate", "--num", "1", "--out", str(tmp_path / "o"),
                                          "--no-progress"])
        return result.exit_code, result.stderr
    return invoke


@pytest.fixture
def train_raising(monkeypatch, capsys):
    """train_sft's main() whose preparation raises."""
    from selfinstruct.train_sft import train

    def invoke(error: BaseException, rank: str = "0"):
        monkeypatch.setattr(train, "prepare", _raising(error))
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as e:
            train.main(["tiny-cpu"])
        return e.value.code, capsys.readouterr().err
    return invoke


@pytest.mark.parametrize("error", [UsageError("lr must be a number"), InputError("no records", "d.json", 2)],
                         ids=["usage", "input"])
def test_the_cli_and_train_sft_map_a_user_error_to_the_same_line_and_exit_2(cli_raising, train_raising,
                                                                            tmp_path, error):
    expected = (2, f"Error: {error}\n")
    assert cli_raising(error, tmp_path) == expected
    assert train_raising(error) == expected


def test_train_sft_prints_only_on_rank_0_and_every_rank_exits_2(train_raising):
    assert train_raising(UsageError("boom"), rank="1") == (2, "")
    assert train_raising(UsageError("boom"), rank="0") == (2, "Error: boom\n")


def test_an_interrupt_exits_130_from_both_with_each_ones_way_to_continue(cli_raising, train_raising, tmp_path):
    from selfinstruct.train_sft.train import INTERRUPTED as TRAIN_INTERRUPTED

    assert cli_raising(KeyboardInterrupt(), tmp_path) == (130, INTERRUPTED + "\n")
    assert train_raising(KeyboardInterrupt()) == (
        130, "Interrupted: rerun with resume=true to continue from the last complete checkpoint.\n")
    assert TRAIN_INTERRUPTED in train_raising(KeyboardInterrupt())[1]
