"""The CLI's own errors: one line, the right exit code, the mistake named."""

from __future__ import annotations

import pytest

from shared.cli.main import main


def error(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return int(exit_info.value.code), capsys.readouterr().err


def test_a_mistyped_option_is_named_before_the_one_it_hid(capsys):
    code, err = error(
        capsys, "publish", "interaction", "--user", "u", "--itme", "x", "--type", "view"
    )
    assert code == 2
    assert "unrecognized arguments: --itme; the following arguments are required: --item" in err
    assert len(err.strip().splitlines()) == 1


def test_negative_values_are_not_taken_for_options(capsys):
    code, err = error(capsys, "publish", "interaction", "--user", "u", "--rating", "-1")
    assert code == 2 and "unrecognized" not in err and "required: --item" in err


def test_a_named_settings_file_that_is_missing_is_one_line_exit_2(capsys):
    assert main(["--env-file", "/nonexistent/marquee.env", "topics", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("marquee: error: settings file /nonexistent/marquee.env does not exist")
    assert len(err.strip().splitlines()) == 1


def test_users_add_without_a_terminal_says_to_pipe_the_password(capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, nothing piped either
    assert main(["--env-file", "", "users", "add", "app1"]) == 2
    err = capsys.readouterr().err
    assert "no terminal to ask for the password" in err and "--password-stdin" in err
    assert "EOFError" not in err and "Warning" not in err
