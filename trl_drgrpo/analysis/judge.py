"""An LLM judge of self-reflection behind any OpenAI-compatible chat endpoint, with an on-disk verdict cache.

Off by default (the keyword detector needs no model). Point ``url`` at e.g. a local vLLM server
(``vllm serve <model>`` exposes ``http://127.0.0.1:8000/v1``); each response is sent once with
``prompt`` (a format string with ``{response}`` and optionally ``{question}``), the reply's first
``yes``/``no`` is the verdict, and verdicts are appended to ``cache_path`` (JSON lines keyed by a hash of
model + filled prompt) so reruns and interrupted runs do not ask again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .io import AnalysisError

DEFAULT_JUDGE_PROMPT = (
    "Below is a model's response to a math question. Does the response show self-reflection, i.e. does the "
    "model go back to check, verify, question or revise its own reasoning or answer (not just state steps)?\n"
    "Reply with YES or NO only.\n\n"
    "Question:\n{question}\n\nResponse:\n{response}"
)
_VERDICT_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class JudgeConfig:
    """Where and how to ask the judge."""

    url: str = field(
        metadata={"help": "Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."}
    )
    model: str = field(default="default", metadata={"help": "Model name sent in each request."})
    prompt: str = field(
        default=DEFAULT_JUDGE_PROMPT,
        metadata={"help": "Format string with {response} (and optionally {question})."},
    )
    cache_path: str | None = field(
        default=None, metadata={"help": "JSON-lines verdict cache (None: no cache)."}
    )
    api_key: str | None = field(default=None, metadata={"help": "Bearer token, if the endpoint needs one."})
    max_tokens: int = field(default=8, metadata={"help": "Tokens the judge may answer with."})
    timeout_s: float = field(default=60.0, metadata={"help": "Seconds per request."})
    retries: int = field(default=2, metadata={"help": "Extra attempts after a failed request."})
    workers: int = field(default=4, metadata={"help": "Concurrent requests."})

    def __post_init__(self):
        if "{response}" not in self.prompt:
            raise AnalysisError("the judge prompt needs a {response} field")
        if not self.url.startswith(("http://", "https://")):
            raise AnalysisError(f"judge url must start with http:// or https://, got {self.url!r}")
        if self.workers < 1 or self.retries < 0 or self.max_tokens < 1:
            raise AnalysisError("judge workers and max_tokens must be >= 1, retries >= 0")


def parse_verdict(reply: str) -> bool | None:
    """``True`` for a reply whose first yes/no word is yes, ``False`` for no, else None."""
    match = _VERDICT_RE.search(reply or "")
    return None if match is None else match.group(1).lower() == "yes"


def fill_prompt(prompt: str, response: str, question: str = "") -> str:
    """The judge prompt for one response (only ``{response}``/``{question}`` are replaced)."""
    return prompt.replace("{question}", question).replace("{response}", response)


class Judge:
    """Asks ``config.url`` for verdicts, caching them in ``config.cache_path``."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.cache: dict[str, dict] = {}
        if config.cache_path and Path(config.cache_path).is_file():
            for line in Path(config.cache_path).read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from an interrupted run
        self.requests = 0

    def key(self, filled_prompt: str) -> str:
        return hashlib.sha256(json.dumps([self.config.model, filled_prompt]).encode()).hexdigest()

    def _ask(self, filled_prompt: str) -> str:
        body = json.dumps(
            {
                "model": self.config.model,
                "messages": [{"role": "user", "content": filled_prompt}],
                "temperature": 0.0,
                "max_tokens": self.config.max_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        url = self.config.url.rstrip("/") + "/chat/completions"
        error = ""
        for attempt in range(self.config.retries + 1):
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                self.requests += 1
                return str(payload["choices"][0]["message"]["content"] or "")
            except urllib.error.HTTPError as err:
                error = f"HTTP {err.code} {err.reason}"
                if err.code < 500 and err.code != 429:
                    break  # a client error will not go away
            except (urllib.error.URLError, OSError) as err:
                error = str(getattr(err, "reason", err))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                error = "the reply is not an OpenAI chat completion"
                break
            time.sleep(min(4.0, 0.5 * 2**attempt))
        raise AnalysisError(f"judge request to {url} failed: {error}")

    def verdicts(
        self, responses: Sequence[str], questions: Sequence[str] | None = None, show_progress: bool = True
    ) -> list[bool | None]:
        """One verdict per response (None when the reply has no yes/no)."""
        questions = questions if questions is not None else [""] * len(responses)
        prompts = [fill_prompt(self.config.prompt, r, q) for r, q in zip(responses, questions, strict=True)]
        keys = [self.key(p) for p in prompts]
        todo = {k: p for k, p in zip(keys, prompts, strict=True) if k not in self.cache}
        if todo:
            cache_file = None
            if self.config.cache_path:
                Path(self.config.cache_path).parent.mkdir(parents=True, exist_ok=True)
                cache_file = open(self.config.cache_path, "a", encoding="utf-8")  # noqa: SIM115
            try:
                with ThreadPoolExecutor(self.config.workers) as pool:
                    items = list(todo.items())
                    replies = pool.map(lambda kp: self._ask(kp[1]), items)
                    bar = tqdm(total=len(items), desc="judge", disable=not show_progress)
                    for (k, _), reply in zip(items, replies, strict=True):
                        entry = {"key": k, "reply": reply, "verdict": parse_verdict(reply)}
                        self.cache[k] = entry
                        if cache_file is not None:
                            cache_file.write(json.dumps(entry) + "\n")
                            cache_file.flush()
                        bar.update()
                    bar.close()
            finally:
                if cache_file is not None:
                    cache_file.close()
        return [self.cache[k]["verdict"] for k in keys]


def api_key_from_env(name: str | None) -> str | None:
    """The API key held by environment variable ``name`` (None when unset)."""
    return os.environ.get(name) if name else None
