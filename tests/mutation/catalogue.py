# SPDX-License-Identifier: MIT
"""Named mutations: a guard removed or weakened, and the tests that must then fail.

Each ``Mutation`` replaces one exact snippet (it must occur exactly once in its file, so a refactor
that moves the guard makes ``tests/unit/test_mutation_catalogue.py`` fail instead of the mutation
silently missing) in a throwaway copy of ``src/``; ``python -m tests.mutation.run`` then runs
``tests`` against the copy and requires them to fail.  See docs/mutation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLLBACK = "tests/integration/host/test_update_rollback.py"
CORPUS = "tests/integration/host/test_update_corpus.py"
VERSION = "tests/property/test_version_property.py"
MANIFEST = "tests/integration/test_manifest_vs_sysupdate.py"
PINNING = "tests/integration/test_runtime_pinning.py"
STATE = "tests/property/test_state_property.py"
DIALECT = "tests/integration/test_dialect_vs_sysupdate.py"
HOST = "tests/integration/host/test_update_e2e.py"
REPLAY = "tests/unit/trusted/test_replay_floor.py"
SHARE = "tests/integration/host/test_share_reset.py"
FRESH = "tests/unit/trusted/test_freshness_ratchet.py"
FRESH_HOST = "tests/integration/host/test_update_freshness.py"
STATE_CLI = "tests/integration/host/test_state_cli.py"
SANDBOX_UID = "tests/integration/host/test_sandbox_uid.py"
RUN_AS = "tests/integration/test_proc_run_as.py"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutation:
    """Replace ``find`` by ``replace`` in ``path`` (relative to ``src/airlock``)."""

    name: str
    guard: str
    path: str
    find: str
    replace: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # --- anti-rollback: the floor -------------------------------------------------------------
    Mutation(
        name="floor-not-fed",
        guard="the stored rollback floor is handed to the judge",
        path="pipeline/steps.py",
        find="floor=saved.floor,",
        replace="floor=None,",
        tests=(f"{ROLLBACK}::test_the_stored_floor_refuses_a_rollback_the_disk_no_longer_shows",),
    ),
    Mutation(
        name="rollback-check-removed",
        guard="the judge refuses a release older than the floor or the installed version",
        path="trusted/verify.py",
        find="    _check_rollback(release.version, policy)\n",
        replace="    pass\n",
        tests=(f"{ROLLBACK}::test_the_stored_floor_refuses_a_rollback_the_disk_no_longer_shows",),
    ),
    Mutation(
        name="rollback-ignores-floor",
        guard="the rollback check compares with the floor, not only the installed version",
        path="trusted/verify.py",
        find='(("floor", policy.floor), ("installed version", policy.installed))',
        replace='(("installed version", policy.installed),)',
        tests=(f"{ROLLBACK}::test_the_stored_floor_refuses_a_rollback_the_disk_no_longer_shows",),
    ),
    Mutation(
        name="floor-not-recorded",
        guard="a good boot raises the floor to the version that booted and was blessed",
        path="state.py",
        find="floor = _higher(floor, event.version)",
        replace="floor = floor",
        tests=(
            f"{ROLLBACK}::test_the_stored_floor_refuses_a_rollback_the_disk_no_longer_shows",
            f"{STATE}::test_any_history_keeps_the_invariants",
        ),
    ),
    Mutation(
        name="floor-may-fall",
        guard="record never lowers the floor",
        path="state.py",
        find="version.compare(b, a) > 0",
        replace="version.compare(b, a) != 0",
        tests=(
            f"{ROLLBACK}::test_the_floor_only_rises_when_sysupdate_reports_an_older_version",
            f"{STATE}::test_any_history_keeps_the_invariants",
        ),
    ),
    # --- anti-replay: the newest accepted signature time ----------------------------------------
    Mutation(
        name="not-before-not-fed",
        guard="the newest accepted signature time is handed to the judge",
        path="pipeline/steps.py",
        find="not_before=saved.newest_signature,",
        replace="not_before=None,",
        tests=(f"{ROLLBACK}::test_the_newest_signature_time_refuses_an_older_manifest",),
    ),
    Mutation(
        name="replay-check-removed",
        guard="the judge refuses a counted signature older than not_before",
        path="trusted/verify.py",
        find="if s.created < policy.not_before:",
        replace="if False:",
        tests=(f"{ROLLBACK}::test_the_newest_signature_time_refuses_an_older_manifest",),
    ),
    Mutation(
        name="signature-time-not-recorded",
        guard="record stores the newest accepted signature time",
        path="state.py",
        find="newest_signature=newest,",
        replace="newest_signature=old.newest_signature,",
        tests=(
            f"{ROLLBACK}::test_the_newest_signature_time_refuses_an_older_manifest",
            f"{STATE}::test_any_history_keeps_the_invariants",
        ),
    ),
    # --- the hostile corpus through airlock update (a sample of the judge's guards) -------------
    Mutation(
        name="digest-check-removed",
        guard="each payload's SHA-256 must match SHA256SUMS",
        path="trusted/verify.py",
        find="if digest.sha256 != cand.claimed_sha256:",
        replace="if False:",
        tests=(f"{CORPUS}::test_refused_by_airlock_update[digest_mismatch]",),
    ),
    Mutation(
        name="setuid-allowed",
        guard="the walk refuses set-user-ID and set-group-ID files",
        path="untrusted/walk.py",
        find="if st.st_mode & (stat.S_ISUID | stat.S_ISGID):",
        replace="if False:",
        tests=(f"{CORPUS}::test_refused_by_airlock_update[setuid_payload]",),
    ),
    Mutation(
        name="ambiguous-allowed",
        guard="a name two transfers would pick up is refused",
        path="untrusted/candidate.py",
        find="if len(loose) > 1:",
        replace="if False:",
        tests=(f"{CORPUS}::test_refused_by_airlock_update[name_two_transfers_would_pick_up]",),
    ),
    Mutation(
        name="threshold-ignored",
        guard="the manifest needs signatures by threshold distinct trusted keys",
        path="trusted/verify.py",
        find="if len(distinct) < policy.threshold:",
        replace="if False:",
        tests=(f"{CORPUS}::test_refused_by_airlock_update[below_threshold]",),
    ),
    # --- the oracles pinned to the runtime (item 4) ---------------------------------------------
    Mutation(
        name="version-dot-is-a-separator",
        guard="version.compare treats '.' as systemd does",
        path="formats/version.py",
        find='c in "~-^."',
        replace='c in "~-^"',
        tests=(f"{VERSION}::test_compare_agrees_with_systemd_analyze_on_2000_pairs",),
    ),
    Mutation(
        name="host-sysupdate-ignored",
        guard="locate() uses the host's own systemd-sysupdate when it is >= 257",
        path="backends/apply/runtime.py",
        find="if host.exists() and",
        replace="if False and",
        tests=(f"{PINNING}::test_a_host_sysupdate_is_used_directly",),
    ),
    Mutation(
        name="manifest-refuses-text-mode",
        guard="the SHA256SUMS parser reads text-mode lines ('  name') as systemd 257 does",
        path="formats/manifest.py",
        find="""if raw[p] not in b"* ":""",
        replace="""if raw[p] not in b"*":""",
        tests=(f"{MANIFEST}::test_both_accept_and_list_the_same_versions",),
    ),
    # --- what each systemd-sysupdate version reads (issue #14, formats.dialect) ---------------
    Mutation(
        name="applier-signature-not-required",
        guard="the judge requires a signature file the applying sysupdate reads",
        path="trusted/verify.py",
        find="    _check_appliers_read_a_signature(classified, policy.appliers)\n",
        replace="",
        tests=(f"{DIALECT}::test_signature_names_each_version_reads",),
    ),
    Mutation(
        name="lz4-not-refused",
        guard="the judge refuses lz4 magic, which 262 decompresses",
        path="formats/dialect.py",
        find="    compressions=(XZ, GZIP, BZIP2, ZSTD, LZ4),",
        replace="    compressions=(XZ, GZIP, BZIP2, ZSTD),",
        tests=(f"{DIALECT}::test_compressions_each_version_undoes",),
    ),
    Mutation(
        name="vendor-keyring-not-bound-over",
        guard="the host keyring is bound over the vendor keyring too (262 merges it)",
        path="backends/apply/sysupdate.py",
        find="    paths = dialect.for_version(rt.version).keyrings\n",
        replace="    paths = dialect.for_version(rt.version).keyrings[:-1]\n",
        tests=(f"{DIALECT}::test_a_key_only_the_vendor_keyring_holds_is_never_trusted",),
    ),
    Mutation(
        name="keyring-env-not-set",
        guard="SYSTEMD_OPENPGP_KEYRING names the host keyring where the version honours it",
        path="backends/apply/sysupdate.py",
        find="        if self.keyring is not None and rules.keyring_env is not None:",
        replace="        if False:",
        tests=(f"{DIALECT}::test_a_key_only_the_vendor_keyring_holds_is_never_trusted",),
    ),
    Mutation(
        name="partial-taken-for-installed",
        guard="a version 262 only partly acquired is not taken for the installed one",
        path="backends/apply/sysupdate.py",
        find="            if not self.dialect.partial_instances or listing.current is None:",
        replace="            if True:",
        tests=(f"{HOST}::test_an_interrupted_apply_is_finished_by_the_next_run",),
    ),
    Mutation(
        name="partial-not-vacuumed",
        guard="a partial instance of the version to install is vacuumed first (262)",
        path="backends/apply/sysupdate.py",
        find="                self._sysupdate.vacuum(inv)",
        replace="                pass",
        tests=(f"{HOST}::test_an_interrupted_apply_is_finished_by_the_next_run",),
    ),
    # --- issue #15: the replay floor, the clean step, the VM's network ----------------------------
    Mutation(
        name="uncounted-signers-recorded",
        guard="only counted signatures become the release's signers (and the recorded floor)",
        path="trusted/verify.py",
        find="signers=counted,",
        replace="signers=counted + uncounted,",
        tests=(f"{REPLAY}::test_a_key_that_does_not_count_cannot_raise_the_floor",),
    ),
    Mutation(
        name="future-signatures-accepted",
        guard="no signature created after the reference time plus the clock skew",
        path="backends/openpgp/__init__.py",
        find="    if created > not_after:",
        replace="    if False:",
        tests=(f"{REPLAY}::test_a_signature_from_the_future_is_refused_by_both_verifiers",),
    ),
    Mutation(
        name="signature-time-past-now",
        guard="state.advance never stores a signature time later than the run's now",
        path="state.py",
        find="min(t, now) for t in event.signed",
        replace="t for t in event.signed",
        tests=(
            f"{REPLAY}::test_the_recorded_time_is_never_later_than_now",
            f"{STATE}::test_any_history_keeps_the_invariants",
        ),
    ),
    Mutation(
        name="share-walked",
        guard="clean_share recreates shared when it holds anything but regular files",
        path="backends/staging/btrfs.py",
        find="if not stat.S_ISREG(st.st_mode):\n                return None",
        replace="if False:\n                return None",
        tests=(f"{SHARE}::test_a_10000_deep_chain_is_cleared_without_a_walk",),
    ),
    Mutation(
        name="qemu-nic-user",
        guard="the QEMU guest has no NIC, only the relay's serial port (ADR 0172)",
        path="backends/fetcher/qemu.py",
        find='"-nic", "none",',
        replace='"-nic", "user,model=virtio-net-pci",',
        tests=(
            "tests/unit/backends/fetcher/test_qemu_route.py"
            "::test_the_guest_has_no_nic_and_one_serial_port_on_an_inherited_socket",
            "tests/integration/vm/test_qemu_fetcher.py"
            "::test_guest_gets_no_ipv6_and_cannot_reach_the_host_over_it",
        ),
    ),
    # --- bounded hashing cost and what cannot install (issue 15 points 6 and 8) ---------------
    Mutation(
        name="sparse-check-removed",
        guard="the walk refuses a file with fewer than half of its bytes allocated",
        path="untrusted/walk.py",
        find="if st.st_size > SPARSE_EXEMPT_BYTES and 2 * allocated < st.st_size:",
        replace="if False:",
        tests=(
            "tests/unit/untrusted/test_walk.py"
            "::test_negative_control_the_sparse_rule_fires_on_half_a_hole",
            f"{CORPUS}::test_refused_by_airlock_update[sparse_root_image_64gib]",
        ),
    ),
    Mutation(
        name="room-check-removed",
        guard="the judge refuses a payload larger than its target's room before hashing",
        path="trusted/verify.py",
        find="        bounds.check_room(release, policy)",
        replace="        pass",
        tests=(
            "tests/integration/host/test_update_room.py"
            "::test_root_image_one_byte_larger_than_its_slot_is_refused",
            "tests/integration/test_bounded_hashing_btrfs.py"
            "::test_reflinked_root_image_is_not_sparse_but_its_slot_bounds_it",
        ),
    ),
    Mutation(
        name="room-not-fed",
        guard="the room the applier measured reaches the judge",
        path="pipeline/steps.py",
        find="room=ctx.applier.room(),",
        replace="room=(),",
        tests=(
            "tests/unit/pipeline/test_update.py::test_the_judge_gets_the_room_the_applier_measured",
            "tests/integration/host/test_update_room.py"
            "::test_root_image_one_byte_larger_than_its_slot_is_refused",
        ),
    ),
    Mutation(
        name="label-check-removed",
        guard="the judge refuses a partition label longer than GPT's 36 UTF-16 units",
        path="trusted/verify.py",
        find="        bounds.check_labels(release, transfers)",
        replace="        pass",
        tests=(
            f"{CORPUS}::test_refused_by_airlock_update[version_too_long_for_a_gpt_partition_label]",
        ),
    ),
    Mutation(
        name="host-sources-unchecked",
        guard="host transfers must install url-file from file://MOUNT_POINT",
        path="pipeline/wiring.py",
        find="    check_host_sources(judge.transfers, config.apply.mount_point)\n",
        replace="",
        tests=(
            "tests/integration/host/test_update_room.py"
            "::test_a_host_transfer_not_reading_the_snapshot_stops_update_before_it_starts",
        ),
    ),
    # --- honest freshness (issue #15 item 2, docs/adr/0155) ---------------------------------------
    Mutation(
        name="last-check-on-every-run",
        guard="only a fresh manifest (unexpired BEST-BEFORE or a newer signature) moves last_check",
        path="state.py",
        find="last_check=now if is_fresh else old.last_check,",
        replace="last_check=now,",
        tests=(
            f"{FRESH}::test_a_replayed_unmarked_manifest_does_not_move_the_last_check",
            f"{STATE}::test_any_history_keeps_the_invariants",
            f"{FRESH_HOST}::test_a_replayed_unmarked_manifest_is_not_fresh_and_keeps_the_last_check",
        ),
    ),
    Mutation(
        name="fresh-ratchet-not-recorded",
        guard="accepting a manifest with BEST-BEFORE sets the freshness ratchet",
        path="state.py",
        find="fresh_required=old.fresh_required or event.best_before is not None,",
        replace="fresh_required=old.fresh_required,",
        tests=(
            f"{FRESH}::test_a_run_that_accepts_best_before_sets_the_ratchet_for_the_next_run",
            f"{STATE}::test_any_history_keeps_the_invariants",
            f"{FRESH_HOST}::test_the_ratchet_refuses_an_unmarked_manifest_until_root_resets_it",
        ),
    ),
    Mutation(
        name="fresh-ratchet-not-fed",
        guard="the stored freshness ratchet is handed to the judge",
        path="pipeline/steps.py",
        find="fresh_required=saved.fresh_required,",
        replace="fresh_required=False,",
        tests=(
            f"{FRESH}::test_a_run_that_accepts_best_before_sets_the_ratchet_for_the_next_run",
            f"{FRESH_HOST}::test_the_ratchet_refuses_an_unmarked_manifest_until_root_resets_it",
        ),
    ),
    Mutation(
        name="fresh-ratchet-check-removed",
        guard="with the ratchet on, the judge refuses a manifest without BEST-BEFORE",
        path="trusted/verify.py",
        find="        if policy.fresh_ratchet:\n",
        replace="        if False:\n",
        tests=(
            f"{FRESH}::test_with_the_ratchet_a_manifest_without_best_before_is_refused",
            f"{FRESH_HOST}::test_the_ratchet_refuses_an_unmarked_manifest_until_root_resets_it",
        ),
    ),
    Mutation(
        name="state-reset-without-lock",
        guard="airlock state reset takes the update lock (refuses while an update runs)",
        path="cli/admin.py",
        find="with lock.hold(lock_path):",
        replace="with open(os.devnull):",
        tests=(
            f"{STATE_CLI}::test_reset_refuses_while_another_process_holds_the_update_lock",
            f"{FRESH_HOST}::test_state_reset_refuses_while_an_update_holds_the_lock_and_succeeds_after",
        ),
    ),
    Mutation(
        name="state-reset-without-root",
        guard="airlock state refuses a caller that is not root",
        path="cli/admin.py",
        find="    if os.geteuid() != 0:\n",
        replace="    if False:\n",
        tests=(f"{STATE_CLI}::test_the_root_check_comes_before_anything_is_read",),
    ),
    # --- fetchers: a real unprivileged uid (ADR 0170, 0171) -------------------------------------
    Mutation(
        name="sandbox-as-root",
        guard="the sandbox payload runs as the configured unprivileged host uid",
        path="backends/fetcher/sandbox.py",
        find="if os.geteuid() != 0:\n            return None, None",
        replace="if True:\n            return None, None",
        tests=(
            f"{SANDBOX_UID}::test_the_payload_is_the_configured_uid_on_the_host",
            f"{SANDBOX_UID}::test_the_payload_cannot_read_a_root_only_file_in_a_read_only_bind",
        ),
    ),
    Mutation(
        name="sandbox-binds-etc-ssl",
        guard="of /etc/ssl only certs/ is bound into the sandbox",
        path="backends/fetcher/sandbox.py",
        find='"/etc/ssl/certs",',
        replace='"/etc/ssl",',
        tests=(
            f"{SANDBOX_UID}::test_the_payload_cannot_read_a_root_only_file_in_a_read_only_bind",
        ),
    ),
    Mutation(
        name="clean-keeps-set-id",
        guard="clean_share removes files with a set-user-ID, set-group-ID or sticky bit",
        path="backends/staging/btrfs.py",
        find="and not st.st_mode & _SPECIAL_BITS",
        replace="and True",
        tests=(
            "tests/integration/host/test_staging_btrfs.py"
            "::test_clean_share_unlinks_unwanted_regular_files",
        ),
    ),
    Mutation(
        name="run-as-binds-seen-by-the-guard",
        guard="RunAs binds are invisible to the guard, whose scratch removal is recursive",
        path="proc/guard.py",
        find="        _check(_libc.unshare(CLONE_NEWNS))\n",
        replace="",
        tests=(f"{RUN_AS}::test_binds_reach_only_the_command_and_survive_scratch_removal",),
    ),
    Mutation(
        name="run-as-no-nproc",
        guard="RunAs sets RLIMIT_NPROC before the drop",
        path="proc/guard.py",
        find="resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))",
        replace="pass",
        tests=(
            f"{RUN_AS}::test_max_processes_is_the_uids_rlimit_nproc",
            f"{RUN_AS}::test_forks_beyond_max_processes_fail",
        ),
    ),
    Mutation(
        name="qemu-as-root",
        guard="QEMU and its forwarders run as the configured unprivileged uid, bounded",
        path="backends/fetcher/qemu.py",
        find="if os.geteuid() != 0:\n        yield None, {}",
        replace="if True:\n        yield None, {}",
        tests=(
            "tests/integration/vm/test_qemu_unprivileged.py"
            "::test_qemu_is_unprivileged_under_seccomp_and_one_forwarder_bounds_the_connections",
        ),
    ),
    Mutation(
        name="qemu-in-host-netns",
        guard="QEMU runs in an empty network namespace of its own (ADR 0177)",
        path="backends/fetcher/qemu.py",
        find="own_netns=True",
        replace="own_netns=False",
        tests=(
            "tests/integration/vm/test_qemu_unprivileged.py"
            "::test_qemu_is_unprivileged_under_seccomp_and_one_forwarder_bounds_the_connections",
        ),
    ),
    # --- one bounded forwarder (issue 15 item 3, ADR 0172) -------------------------------------
    Mutation(
        name="qemu-may-spawn",
        guard="QEMU's seccomp filter denies spawning",
        path="backends/fetcher/qemu.py",
        find="elevateprivileges=deny,spawn=deny,",
        replace="elevateprivileges=deny,",
        tests=(
            "tests/unit/backends/fetcher/test_qemu_route.py"
            "::test_qemu_may_neither_spawn_nor_change_credentials",
            "tests/integration/vm/test_qemu_unprivileged.py"
            "::test_negative_control_the_old_per_connection_forwarder_now_kills_qemu",
        ),
    ),
    Mutation(
        name="relay-no-connection-limit",
        guard="the host forwarder refuses an OPEN beyond max_connections",
        path="backends/fetcher/relay.py",
        find="full = self._active >= self._max",
        replace="full = False",
        tests=(
            "tests/unit/backends/fetcher/test_relay.py"
            "::test_an_open_flood_beyond_max_connections_gets_closes_and_no_upstream_connection",
        ),
    ),
    Mutation(
        name="relay-length-unchecked",
        guard="the host forwarder refuses a frame longer than MAX_PAYLOAD",
        path="backends/fetcher/relay.py",
        find="if length > MAX_PAYLOAD:",
        replace="if False:",
        tests=(
            "tests/unit/backends/fetcher/test_relay.py"
            "::test_a_broken_frame_ends_the_relay_and_every_upstream_connection",
        ),
    ),
)
