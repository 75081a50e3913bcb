"""The optional LLM judge of self-reflection, against a stub OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trl_drgrpo.analysis.cli import main
from trl_drgrpo.analysis.io import AnalysisError
from trl_drgrpo.analysis.judge import Judge, JudgeConfig, parse_verdict
from trl_drgrpo.analysis.reflection import reflection


class _Stub(BaseHTTPRequestHandler):
    """Answers YES when the response part of the prompt mentions "verify", "maybe" for "unsure", else NO."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        content = body["messages"][0]["content"]
        response = content.rsplit("Response:", 1)[-1]
        reply = "Maybe." if "unsure" in response else ("YES" if "verify" in response else "No, it does not.")
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def stub_url():
    _Stub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _samples(tmp_path):
    rows = [
        {"problem": "1+1", "response": "2. Let me verify: yes \\boxed{2}", "score": 1.0},
        {"problem": "1+1", "response": "wait, \\boxed{3}", "score": 0.0},  # keyword but judged NO
        {"problem": "2+2", "response": "I verify again \\boxed{4}", "score": 1.0},
        {"problem": "2+2", "response": "unsure \\boxed{5}", "score": 0.0},
    ]
    path = tmp_path / "gens.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_parse_verdict():
    assert parse_verdict("YES") is True
    assert parse_verdict("No, it does not.") is False
    assert parse_verdict("yesterday? no") is False  # whole words only
    assert parse_verdict("Maybe.") is None and parse_verdict("") is None


def test_judge_verdicts_and_cache(tmp_path, stub_url):
    cache = tmp_path / "cache.jsonl"
    path = _samples(tmp_path)
    config = JudgeConfig(url=stub_url, model="judge-m", cache_path=str(cache), api_key="k", workers=2)
    summary = reflection([path], tmp_path / "out", judge=config, show_progress=False)
    assert summary["detector"] == "judge"
    res = summary["results"]["gens"]
    # verdicts: yes, no, yes, undecided -> rate over decided 2/3; with: [1, 1]; without: [0]
    assert res["overall"]["reflection_rate"] == pytest.approx(2 / 3)
    assert (
        res["overall"]["accuracy_with_reflection"] == 1.0
        and res["overall"]["accuracy_without_reflection"] == 0.0
    )
    # keywords flag "wait" and "verify again": of the 3 decided, the judge agrees on the third only
    assert res["judge"] == {"undecided": 1, "agreement_with_keywords": pytest.approx(1 / 3)}
    assert len(_Stub.requests) == 4
    first = _Stub.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer k"
    assert first["body"]["model"] == "judge-m" and first["body"]["temperature"] == 0.0
    assert "Question:\n1+1" in first["body"]["messages"][0]["content"]
    assert len(cache.read_text().splitlines()) == 4

    # a second run asks nothing: every verdict is cached
    again = reflection([path], None, judge=config, show_progress=False)
    assert again["results"]["gens"]["overall"] == res["overall"] and len(_Stub.requests) == 4
    # another prompt is another question for the judge
    other = JudgeConfig(
        url=stub_url, model="judge-m", cache_path=str(cache), prompt="Reflects? Response: {response}"
    )
    assert Judge(other).verdicts(["I verify"], show_progress=False) == [True]
    assert len(_Stub.requests) == 5


def test_judge_cli_and_errors(tmp_path, stub_url, capsys):
    path = _samples(tmp_path)
    out = tmp_path / "cli"
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Self-reflection? Answer yes or no. Response: {response}")
    argv = [
        "reflection",
        str(path),
        "--judge_url",
        stub_url,
        "--judge_prompt_file",
        str(prompt),
        "--output_dir",
        str(out),
        "--no_progress",
    ]
    assert main(argv) == 0
    assert (out / "judge_cache.jsonl").is_file()
    assert _Stub.requests[0]["body"]["messages"][0]["content"].startswith(
        "Self-reflection? Answer yes or no."
    )

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(AnalysisError, match="judge request to .* failed"):
        Judge(JudgeConfig(url=dead, retries=0, timeout_s=5)).verdicts(["x"], show_progress=False)
    capsys.readouterr()
    assert main(["reflection", str(path), "--judge_url", "localhost:1", "--output_dir", str(out)]) == 2
    assert "judge url must start with http" in capsys.readouterr().err
    prompt.write_text("no placeholder")
    assert (
        main(
            [
                "reflection",
                str(path),
                "--judge_url",
                stub_url,
                "--judge_prompt_file",
                str(prompt),
                "--output_dir",
                str(out),
            ]
        )
        == 2
    )
    assert "needs a {response} field" in capsys.readouterr().err
