"""Test session set-up: ``--runslow``, one CATH fixture dataset for the whole session, and
kernel bases cached in a folder of the session instead of ``~/.cache/cathnet``."""
import os

import pytest

from cath_helpers import build_fixture_dataset


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def basis_cache(tmp_path_factory):
    """$CATHNET_CACHE for this session (inherited by the processes the tests start)."""
    before = os.environ.get("CATHNET_CACHE")
    os.environ["CATHNET_CACHE"] = str(tmp_path_factory.mktemp("cathnet-cache"))
    yield
    if before is None:
        del os.environ["CATHNET_CACHE"]
    else:
        os.environ["CATHNET_CACHE"] = before


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """The CATH fixture domains as a dataset (``N_SPLITS`` splits), built once; do not modify."""
    return build_fixture_dataset(tmp_path_factory.mktemp("data") / "fixtures.npz")
