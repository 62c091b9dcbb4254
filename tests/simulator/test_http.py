"""The `http` policy drives a real `postsale serve` through POST /v1/decisions (recorded) and
scores the same as the same flow and models in-process - one worker, one client thread and the
book's CSM capacity, so the capacity threshold sees the same decisions in the same order; a
service that refuses is one line."""
from __future__ import annotations

import pytest

from cli.main import main
from simulator.policies import Http, HttpError
from simulator.run import simulate
from tests.e2e.conftest import Server


class BookServer(Server):
    def env(self) -> dict:
        return {**super().env(), "POSTSALE_HUMAN_CAPACITY": "6"}  # 5% of the 120 accounts below


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("sim-http")
    srv = BookServer(work, f"sqlite:///{work / 'postsale.db'}", workers=1)
    srv.start()
    yield srv
    srv.stop()


def test_over_http_the_shipped_flow_scores_as_in_process(server):
    report = simulate(120, 5, 0, ("shipped", "http"), f"http://127.0.0.1:{server.port}", "e2e-decide", threads=1)
    by = {s.policy: s.to_json() for s in report.scores}
    for s in by.values():
        s.pop("seconds")
        s.pop("policy")
    assert by["http"] == by["shipped"]
    assert sum(by["http"]["offer_mix"].values()) > 0
    assert server.errors_logged() == []


def test_a_refusing_service_is_one_line_and_exit_1(server, capsys):
    with pytest.raises(HttpError, match="HTTP 401"):
        Http(f"http://127.0.0.1:{server.port}", "wrong-key").decision({"account": {}})
    assert main(["simulate", "--accounts", "5", "--policy", "none", "--http",
                 f"http://127.0.0.1:{server.port}", "--api-key", "wrong-key"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "Traceback" not in err


def test_a_service_that_is_not_there(capsys):
    from tests.e2e.conftest import free_port
    assert main(["simulate", "--accounts", "5", "--policy", "none", "--http",
                 f"http://127.0.0.1:{free_port()}"]) == 1
    assert "ConnectionRefusedError" in capsys.readouterr().err
