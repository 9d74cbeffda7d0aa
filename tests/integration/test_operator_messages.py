"""What the CLI tells an operator is true when it says it: a printed token works at once, and
`deploy --wait` reports a deployment that cannot come up as soon as that is certain."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES, FIXTURES

pytestmark = pytest.mark.integration


def test_a_created_token_is_accepted_by_every_gateway_as_soon_as_it_is_printed(serve):
    inst = serve(EXAMPLES / "echo", "--auth", "--gateways", "2", "--replicas", "1")
    for trial in range(5):
        created = inst.cli("token", "create", "--role", "invoker", "--name", f"caller-{trial}")
        assert created.returncode == 0 and "warning" not in created.stderr, created.stderr
        token = created.stdout.strip()
        for _ in range(4):  # a new connection each: either gateway process may take it
            code, _, body = inst.post_json("/echo", {"message": "hi"}, headers={
                "authorization": f"Bearer {token}", "content-type": "application/json"})
            assert (code, body) == (200, {"message": "hi"})


def test_deploy_wait_fails_at_once_with_the_error_when_a_new_deployment_crash_loops(serve, tmp_path):
    spec = tmp_path / "steady.yaml"
    spec.write_text(f"deployments:\n  echo:\n    service: {EXAMPLES / 'echo'}\n    replicas: 1\n"
                    "gateway:\n  processes: 1\n")
    inst = serve(str(spec), command="up")
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"deployments:\n  crashy:\n    service: {FIXTURES / 'crashy'}\n    replicas: 1\n"
                      "gateway:\n  processes: 1\n")
    result = inst.cli("deploy", "-f", str(broken), "--wait", "--timeout-s", "60")
    said = " ".join(result.stderr.split())  # as one line, however the console wrapped it
    assert result.returncode == 1
    # failed, not "not rolled out within 60s": a first revision has nothing to roll back to
    assert "crashy: rollout failed: replica r0 of revision 1: crash-looping" in said, said
    assert "ValueError: model weights missing: /nonexistent/weights.bin" in said
