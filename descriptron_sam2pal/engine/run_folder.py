"""A training run's folder (``engine.trainer``): the names of its files, the log and the JSON files,
and the rules for starting or resuming a run in it.

- ``settings.json``: what the run learns from and with (``TrainConfig``, model, templates, images);
  a resume must find the same, ``steps`` aside;
- ``log.jsonl``: one JSON line per optimizer step; a resume drops the lines after its last state;
- ``result.json``: how the call ended;
- ``adapter.pt`` and ``state.pt``: written by the trainer (weights and the state a resume needs).

Every file except the log is written atomically. It changes when the layout of a run folder
changes; what a step computes stays in the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path

from descriptron_sam2pal import UserError
from descriptron_sam2pal.atomic import atomic_write

SETTINGS_FILE = "settings.json"
LOG_FILE = "log.jsonl"
ADAPTER_FILE = "adapter.pt"
STATE_FILE = "state.pt"
RESULT_FILE = "result.json"


class RunFolder:
    """The files of the training run in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def check_start(self, resume: bool) -> None:
        """UserError unless a run can start here (nothing of a run yet) or, with ``resume``, go on."""
        state, log_file = self.path / STATE_FILE, self.path / LOG_FILE
        if resume and not state.exists():
            raise UserError(f"nothing to resume in {self.path}: it has no {STATE_FILE}; start a new run")
        if not resume and (state.exists() or log_file.exists()):
            raise UserError(f"{self.path} already holds a training run; resume it or choose an empty folder")

    def write_json(self, name: str, data: dict) -> None:
        atomic_write(self.path / name, lambda f: f.write(json.dumps(data, indent=2, default=str).encode()))

    def read_log(self) -> list[dict]:
        """The log's entries up to the first unreadable line (one cut by a crash)."""
        path = self.path / LOG_FILE
        if not path.exists():
            return []
        lines = []
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a crash
                    break
        return lines

    def append_log(self, entry: dict) -> None:
        with open(self.path / LOG_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()

    def log_until(self, step: int) -> list[dict]:
        """The log's entries of steps up to ``step``; the later ones (logged after the last state
        save, so redone by a resume) are dropped from the file too."""
        history = [e for e in self.read_log() if e.get("step", 0) <= step]
        atomic_write(
            self.path / LOG_FILE, lambda f: f.write("".join(json.dumps(e) + "\n" for e in history).encode())
        )
        return history

    def check_resumable(self, current: dict, defaults: dict) -> dict:
        """UserError unless ``settings.json`` has the data, model and settings of ``current`` (the
        settings this call would write; ``steps`` and ``stop_after`` may differ). ``defaults``:
        ``TrainConfig()``'s, what ran for a setting added since the saved run. Returns the saved
        settings."""
        saved = json.loads((self.path / SETTINGS_FILE).read_text())
        differs = []
        free = ("steps", "resolved", "stop_after")  # how long a run goes on, not what it trains
        saved_cfg = {k: v for k, v in saved.get("config", {}).items() if k not in free}
        current_cfg = {k: v for k, v in current["config"].items() if k not in free}
        for key in set(current_cfg) - set(saved_cfg):  # a setting added since: its default is what ran
            if current_cfg[key] == defaults.get(key):
                del current_cfg[key]
        if saved_cfg != current_cfg:
            keys = sorted(
                k for k in set(saved_cfg) | set(current_cfg) if saved_cfg.get(k) != current_cfg.get(k)
            )
            differs.append("settings (" + ", ".join(keys) + ")")
        for key, what in (
            ("model", "base model"),
            ("templates", "templates"),
            ("unlabeled", "unlabeled images"),
            ("validation", "validation images"),
        ):
            a, b = saved.get(key), current[key]
            if key == "model":
                a = {k: v for k, v in (a or {}).items() if k != "device"}
                b = {k: v for k, v in b.items() if k != "device"}
            if json.loads(json.dumps(a)) != json.loads(json.dumps(b)):
                differs.append(what)
        if differs:
            raise UserError(
                f"cannot resume the run in {self.path}: its {', '.join(differs)} differ from "
                "this call's; resume with the same inputs, or start a new run in an empty folder"
            )
        return saved
