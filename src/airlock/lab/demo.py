# SPDX-License-Identifier: MIT
"""``airlock demo``: the whole flow on one machine, as a user first meets it.

1. Build a signing key and releases 1.0, 2.0 and 3.0 (real EROFS roots, dm-verity trees, kernels).
2. Make a GPT disk with Spectrum's A/B layout (slot A = 1.0), a ``$BOOT`` directory, a btrfs
   staging filesystem and an update server inside a network namespace made for the demo.
3. Publish 1.0 and 2.0; ``airlock update`` 1.0 → 2.0 (the agent downloads in the bubblewrap
   sandbox, the host judges and systemd-sysupdate 257 writes slot B and the UKI).
4. Run again: a no-op that downloads no payload.
5. Reboot into 2.0, publish 3.0; optionally replay one attack (refused, disk unchanged); then
   ``airlock update`` 2.0 → 3.0 into slot A.
6. Print a table: slots before/after, UKIs in ``$BOOT``, bytes downloaded and time per step.

With ``--boot`` the reboots are real: QEMU boots the disk through OVMF, systemd-boot, the UKI and
its initramfs into the dm-verity-protected root (before the first update, after each update), the
console's lines are shown with a bar per boot, and a table sums the boots up.  ``--boot-tries N``
renders the host's kernel transfer with boot counting (``airlock render --boot-tries``).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from airlock.cli.report import print_json
from airlock.errors import ExitStatus, HostError
from airlock.lab import machine
from airlock.lab import workdir as lab_workdir
from airlock.lab.hostile import ATTACKS
from airlock.lab.world import VERSIONS, DiskState, Lab, Run

EXPECTED_ATTACK_STATUS = {
    "symlink": ExitStatus.REJECTED,
    "tampered": ExitStatus.REJECTED,
    "rollback": ExitStatus.REJECTED,
    "expired": ExitStatus.REJECTED,
    "never-exits": ExitStatus.FETCH,
}


@dataclass(slots=True)
class Report:
    """Everything the demo shows, also printed as JSON with ``--json``."""

    states: list[tuple[str, DiskState]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    attack: dict[str, object] | None = None
    kernel_is_uki: bool = False
    roothashes: dict[str, str] = field(default_factory=dict)
    boots: list[tuple[str, machine.Boot]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """JSON-friendly form."""
        return {
            "states": [{"when": when, **state.as_json()} for when, state in self.states],
            "runs": [
                {
                    "label": r.label,
                    "exit_status": r.exit_status,
                    "outcome": r.outcome,
                    "code": r.code,
                    "bytes_downloaded": r.bytes_downloaded,
                    "payload_bytes": r.payload_bytes,
                    "duration_s": round(r.duration_s, 2),
                    "steps": {step: round(d, 3) for step, d in r.steps},
                }
                for r in self.runs
            ],
            "attack": self.attack,
            "kernel_is_uki": self.kernel_is_uki,
            "roothashes": self.roothashes,
            "boots": [{"label": label, **b.as_json()} for label, b in self.boots],
        }


def _width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(
    workdir: Path | None,
    *,
    attack: str | None,
    keep: bool,
    as_json: bool,
    fetcher: str = "sandbox",
    runtime: str = "auto",
    boot: bool = False,
    boot_tries: int | None = None,
) -> int:
    """Run the demo; return the exit status."""
    console = Console(stderr=as_json, highlight=False, width=max(120, _width()))
    signal.signal(signal.SIGTERM, _interrupt)
    report = Report()
    for stale in lab_workdir.sweep(lab_workdir.default_parent()):
        console.print(f"[dim]·[/dim] removed {escape(os.fspath(stale))}, left by a killed demo")
    base = workdir or Path(
        tempfile.mkdtemp(prefix=lab_workdir.PREFIX, dir=lab_workdir.default_parent())
    )
    if workdir is None:
        os.rmdir(base)  # the lab creates it and removes it again unless --keep

    def log(message: str) -> None:
        console.print(f"[dim]·[/dim] {escape(message)}")

    with Lab(
        base, keep=keep, fetcher=fetcher, runtime=runtime, log=log, boot_tries=boot_tries
    ) as world:
        report.roothashes = {v: img.roothash for v, img in world.images.items()}
        report.kernel_is_uki = all(img.kernel_is_uki for img in world.images.values())
        if not report.kernel_is_uki:
            console.print(
                "[yellow]note:[/yellow] kernels are labelled stand-in files "
                "(no ukify/EFI stub in the runtime); roots and verity trees are real"
            )
        if boot and not all(img.bootable for img in world.images.values()):
            raise HostError(
                "--boot needs bootable releases (ukify, the guest kernel and an initramfs)",
                code="host.demo",
                hint="run `make demo` as root: it builds the runtime and the guest kernel",
            )
        report.states.append(("initial", world.state()))
        if boot:
            _boot(console, world, report, expect=VERSIONS[0])
        world.publish(VERSIONS[0])
        world.publish(VERSIONS[1])
        _update(console, world, report, f"update {VERSIONS[0]} → {VERSIONS[1]}", expect="updated")
        _update(console, world, report, "no-op rerun", expect="up-to-date")
        if boot:
            _boot(console, world, report, expect=VERSIONS[1])
        else:
            world.boot(VERSIONS[1])
            console.print(f"[dim]·[/dim] rebooted into {VERSIONS[1]} (os-release IMAGE_VERSION)")
        world.publish(VERSIONS[2])
        if attack is not None:
            report.attack = _attack(console, world, report, attack)
        _update(console, world, report, f"update {VERSIONS[1]} → {VERSIONS[2]}", expect="updated")
        if boot:
            _boot(console, world, report, expect=VERSIONS[2])
            report.states.append((f"after boot {len(report.boots)}", world.state()))
        _show(console, report, world)
        if keep:
            console.print(f"kept the work directory: {escape(os.fspath(base))}")
    if as_json:
        print_json("demo", **report.as_json())
    return 0


def _update(console: Console, world: Lab, report: Report, label: str, *, expect: str) -> Run:
    console.rule(label)
    result = world.update(label)
    report.runs.append(result)
    report.states.append((f"after {label}", world.state()))
    _print_run(console, result)
    if result.exit_status != 0 or result.outcome != expect:
        raise HostError(
            f"demo: {label} ended with status {result.exit_status} ({result.outcome or result.code}"
            f"), expected {expect}: {result.message}",
            code="host.demo",
            hint=f"rerun with --keep and read {world.w}/serve.log and the JSON events",
        )
    return result


def _boot(console: Console, world: Lab, report: Report, *, expect: str) -> machine.Boot:
    label = f"boot {len(report.boots) + 1}"
    console.rule(f"{label}: OVMF → systemd-boot → UKI → initramfs → dm-verity root (QEMU, TCG)")
    stages = len(machine.Stage) - 1
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{label} attempt 1", total=stages, stage="firmware")

        def listen(attempt: int, stage: machine.Stage, line: str) -> None:
            bar.update(task, completed=stage, stage=stage.name.lower(),
                       description=f"{label} attempt {attempt}")  # fmt: skip
            bar.console.print(f"  [dim]serial[/dim] {escape(line)}", soft_wrap=True)

        result = world.reboot(label, listener=listen)
    report.boots.append((label, result))
    final = result.final
    if final is None or not final.ok or final.version != expect:
        raise HostError(
            f"demo: {label} did not boot {expect}: "
            + (final.failure or final.stage.name.lower() if final else "no console output"),
            code="host.demo",
            hint=f"rerun with --keep and read {result.transcript}",
        )
    console.print(
        f"booted [bold]{escape(final.version or '')}[/bold] from {escape(final.data_device or '?')}"
        f", dm-verity status {escape(final.verity or '?')}, root hash "
        f"{escape(final.roothash or '?')}, in {result.seconds:.1f} s",
        soft_wrap=True,
    )
    return result


def _attack(console: Console, world: Lab, report: Report, name: str) -> dict[str, object]:
    console.rule(f"attack: {name} — {ATTACKS[name]}")
    before = world.state()
    result = world.attack(name)
    after = world.state()
    report.runs.append(result)
    _print_run(console, result)
    refused = result.exit_status == EXPECTED_ATTACK_STATUS[name]
    unchanged = before == after
    verdict = "[green]refused[/green]" if refused else "[red]NOT refused[/red]"
    console.print(
        f"{verdict} with status {result.exit_status} ({escape(result.code)}); disk "
        + ("[green]unchanged[/green]" if unchanged else "[red]CHANGED[/red]")
    )
    if not (refused and unchanged):
        raise HostError(f"demo: attack {name} was not refused cleanly", code="host.demo")
    return {
        "name": name,
        "exit_status": result.exit_status,
        "code": result.code,
        "disk_unchanged": unchanged,
    }


def _print_run(console: Console, result: Run) -> None:
    steps = "  ".join(f"{s} {d:.2f}s" for s, d in result.steps)
    console.print(
        f"status {result.exit_status}, outcome {escape(result.outcome or result.code)}, "
        f"{result.payload_bytes} payload bytes downloaded "
        f"({result.bytes_downloaded} in all), {result.duration_s:.1f} s"
    )
    console.print(f"[dim]steps: {steps}[/dim]")
    if result.message:
        # Text from airlock is escaped already; rich markup in it must not be interpreted either.
        console.print(f"[dim]message: {escape(result.message)}[/dim]")


def _show(console: Console, report: Report, world: Lab) -> None:
    for when, state in (report.states[0], report.states[-1]):
        table = Table(title=f"Disk {when}: slots and $BOOT (content identified by SHA-256)")
        for col in ("slot", "GPT label", "PARTUUID", "holds"):
            table.add_column(col)
        for number, label, uuid, content in state.slots:
            table.add_row(str(number), escape(label), escape(uuid), escape(content))
        for name, content in state.boot:
            table.add_row("$BOOT", escape(f"EFI/Linux/{name}"), "", escape(content))
        console.print(table)
    runs = Table(title="Runs: bytes downloaded (payload / all) and time per step")
    for col in ("run", "result", "payload B", "all B", "steps (s)", "total s"):
        runs.add_column(col)
    for r in report.runs:
        steps = " ".join(f"{s}={d:.2f}" for s, d in r.steps)
        result = escape(f"{r.exit_status} {r.outcome or r.code}")
        runs.add_row(
            r.label,
            result,
            str(r.payload_bytes),
            str(r.bytes_downloaded),
            steps,
            f"{r.duration_s:.1f}",
        )
    console.print(runs)
    if report.boots:
        boots = Table(title="Boots (QEMU TCG, OVMF → systemd-boot → UKI → initramfs → root)")
        for col in ("boot", "attempts", "booted", "root on", "verity", "root hash", "blessed", "s"):
            boots.add_column(col)
        for label, b in report.boots:
            f = b.final
            boots.add_row(
                label,
                str(len(b.attempts)),
                escape(f.version or "-") if f else "-",
                escape(f.data_device or "-") if f else "-",
                escape(f.verity or "-") if f else "-",
                escape((f.roothash or "-")[:16] + "…") if f else "-",
                "yes" if f and f.blessed else "no",
                f"{b.seconds:.1f}",
            )
        console.print(boots)


def main(args: Sequence[str] | None = None) -> int:
    """Script entry (the CLI verb lives in airlock.cli.lab)."""
    return run(None, attack=None, keep=False, as_json="--json" in (args or sys.argv[1:]))
