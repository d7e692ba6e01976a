"""The syscall allow-list table and the policy key that requires layers (no fork)."""

from __future__ import annotations

import pytest

from faas_sandbox.engine.isolation import LAYERS, missing, seccomp, syscalls
from faas_sandbox.errors import PolicyError
from faas_sandbox.policy import LAYER_NAMES, Policy


def test_every_allowed_syscall_has_a_reason_and_appears_once() -> None:
    names = [rule.name for rule in syscalls.ALLOWED]
    assert len(names) == len(set(names))
    assert all(rule.reason.strip() for rule in syscalls.ALLOWED)


def test_no_syscall_that_reaches_outside_is_allowed() -> None:
    outside = {
        "open",
        "openat",
        "openat2",
        "creat",
        "stat",
        "newfstatat",
        "statx",
        "access",
        "socket",
        "socketpair",
        "connect",
        "clone",
        "clone3",
        "fork",
        "vfork",
        "execve",
        "execveat",
        "prctl",
        "kill",
        "tgkill",
        "ptrace",
        "process_vm_readv",
        "unshare",
        "setns",
        "mount",
        "chroot",
        "bpf",
        "io_uring_setup",
        "memfd_create",
        "getdents64",
        "getppid",
        "setrlimit",
        "setuid",
        "capset",
        "landlock_restrict_self",
    }
    assert not outside & syscalls.ALLOWED_NAMES


def test_memory_syscalls_cannot_make_executable_memory() -> None:
    rules = {rule.name: rule for rule in syscalls.ALLOWED}
    for name in ("mmap", "mprotect"):
        assert rules[name].conds == (syscalls.Cond(2, 0, syscalls.PROT_EXEC),)
    assert "pkey_mprotect" not in rules


def test_the_table_compiles_on_this_architecture() -> None:
    program, unknown = seccomp.build()
    assert unknown == () and program.instructions > len(syscalls.ALLOWED)


def test_the_filter_built_in_a_child_is_the_same_program() -> None:
    program, unknown = seccomp.build_in_child()
    assert (program.bpf, unknown) == (seccomp.build()[0].bpf, ())


def test_policy_require_names_layers() -> None:
    assert set(LAYERS) == LAYER_NAMES
    policy = Policy.from_dict({"sandbox": {"require": ["seccomp", "landlock"]}})
    assert policy.require == {"seccomp", "landlock"}
    assert policy.describe()["sandbox"]["require"] == ["landlock", "seccomp"]
    with pytest.raises(PolicyError, match=r"sandbox\.require: unknown layer"):
        Policy.from_dict({"sandbox": {"require": ["selinux"]}}, source="p.toml")
    with pytest.raises(PolicyError, match=r"sandbox\.require: expected a list"):
        Policy.from_dict({"sandbox": {"require": "seccomp"}}, source="p.toml")


def test_missing_lists_required_layers_that_are_off() -> None:
    layers = {"seccomp": True, "landlock": False, "net_namespace": True}
    assert missing(frozenset({"seccomp", "landlock", "ipc_namespace"}), layers) == [
        "ipc_namespace",
        "landlock",
    ]


def test_landlock_handles_every_right_its_abi_knows() -> None:
    from faas_sandbox.engine.isolation import landlock

    assert landlock.handled(1) == ((1 << 13) - 1, 0, 0)
    fs, net, scoped = landlock.handled(7)
    assert fs == (1 << 16) - 1  # through IOCTL_DEV (ABI 5)
    assert net == 0b11 and scoped == 0b11  # TCP bind+connect (ABI 4); unix + signal (ABI 6)
    assert landlock.handled(3)[0] == (1 << 15) - 1 and landlock.handled(3)[1:] == (0, 0)


def test_describe_names_what_is_off_and_why() -> None:
    from faas_sandbox.engine.isolation import describe

    text = describe(
        {
            "seccomp": True,
            "landlock": False,
            "landlock_error": "no Landlock",
            "net_namespace": True,
            "ipc_namespace": True,
            "drop_privileges": True,
        }
    )
    assert text == (
        "isolation layers on: seccomp, net_namespace, ipc_namespace, "
        "drop_privileges; off: landlock (landlock_error=no Landlock)"
    )
